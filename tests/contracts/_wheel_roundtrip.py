"""Round-trip check of the installed creditrisk-contracts wheel (run by test_contracts_wheel.py).

Runs inside a fresh virtual environment holding only the wheel and its declared dependencies.
Discovers every proto file, service and RPC from the descriptors of the installed package (no
hand-written list), and for every RPC builds the request and the response message with every field
set, recursively (each oneof branch at least once, over as many variants as the widest oneof
needs), then checks binary and JSON round trips and the generated gRPC stub, servicer and
registration function.

Usage: python _wheel_roundtrip.py EXPECTED_PROTO_FILE...   (e.g. creditrisk/feature/v1/feature_service.proto)
Prints a JSON summary on success; exits non-zero with the failures otherwise.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from typing import Any

import creditrisk
import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

MAX_DEPTH = 8
failures: list[str] = []
oneof_branches_seen: dict[str, set[str]] = {}
oneof_branches_all: dict[str, set[str]] = {}


def is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def is_repeated(field: FieldDescriptor) -> bool:
    if hasattr(FieldDescriptor, "is_repeated"):  # protobuf >= 6.31 (label() is deprecated there)
        return bool(field.is_repeated)
    return field.label == FieldDescriptor.LABEL_REPEATED


def field_message(field: FieldDescriptor) -> Descriptor | None:
    """The message type of a field, or of a map field's values; None for scalars."""
    sub = field.message_type
    if sub is not None and is_map(field):
        sub = sub.fields_by_name["value"].message_type
    return sub


def variant_count(desc: Descriptor, stack: tuple[str, ...] = ()) -> int:
    """How many variants fill() needs so that every oneof branch reachable from desc is set once.

    fill() picks branch k % len(oneof) of a oneof and fills the chosen branch's message with
    variant k // len(oneof) (mixed radix); other message fields get variant k itself.
    """
    if desc.full_name in stack or len(stack) > MAX_DEPTH:
        return 1
    inner = (*stack, desc.full_name)
    n = 1
    for field in desc.fields:
        sub = field_message(field)
        sub_n = variant_count(sub, inner) if sub is not None else 1
        if field.containing_oneof is not None:
            oneof = field.containing_oneof
            n = max(
                n,
                len(oneof.fields)
                * max(
                    (variant_count(m, inner) if (m := field_message(f)) is not None else 1)
                    for f in oneof.fields
                ),
            )
        else:
            n = max(n, sub_n)
    return n


def scalar(field: FieldDescriptor, k: int) -> Any:
    """A non-default value of a scalar field for variant k."""
    t = field.cpp_type
    if t in (
        FieldDescriptor.CPPTYPE_INT32,
        FieldDescriptor.CPPTYPE_INT64,
        FieldDescriptor.CPPTYPE_UINT32,
        FieldDescriptor.CPPTYPE_UINT64,
    ):
        return 7 + k
    if t in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return 0.5 + k
    if t == FieldDescriptor.CPPTYPE_BOOL:
        return True
    if t == FieldDescriptor.CPPTYPE_STRING:
        if field.type == FieldDescriptor.TYPE_BYTES:
            return bytes([0, 1, 2, k % 256])
        return f"{field.name}-{k}"
    if t == FieldDescriptor.CPPTYPE_ENUM:
        values = field.enum_type.values
        # Cycle through the non-zero values (google.protobuf.NullValue only has 0).
        return values[0].number if len(values) == 1 else values[1 + k % (len(values) - 1)].number
    raise AssertionError(f"unhandled type of {field.full_name}")


def fill(msg: Message, k: int, depth: int = 0) -> None:
    """Set every field of msg (one branch per oneof, chosen by k), recursively."""
    desc = msg.DESCRIPTOR
    for oneof in desc.oneofs:
        oneof_branches_all.setdefault(oneof.full_name, {f.name for f in oneof.fields})
    if depth > MAX_DEPTH:
        return
    for field in desc.fields:
        oneof = field.containing_oneof
        kk = k
        if oneof is not None:
            if oneof.fields[k % len(oneof.fields)] is not field:
                continue
            oneof_branches_seen.setdefault(oneof.full_name, set()).add(field.name)
            kk = k // len(oneof.fields)
        value = getattr(msg, field.name)
        if is_map(field):
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            key = scalar(key_field, kk)
            if value_field.message_type is not None:
                fill(value[key], kk, depth + 1)
            else:
                value[key] = scalar(value_field, kk)
        elif is_repeated(field):
            if field.message_type is not None:
                fill(value.add(), kk, depth + 1)
                fill(value.add(), kk + 1, depth + 1)
            else:
                value.extend([scalar(field, kk), scalar(field, kk + 1)])
        elif field.message_type is not None:
            value.SetInParent()
            fill(value, kk, depth + 1)
        else:
            setattr(msg, field.name, scalar(field, kk))


def expected_set_fields(desc: Descriptor) -> int:
    """Fields ListFields() must report when fill() set everything: all but the unchosen oneof branches."""
    return sum(1 for f in desc.fields if f.containing_oneof is None) + len(desc.oneofs)


def check_message(desc: Descriptor, where: str) -> int:
    cls = GetMessageClass(desc)
    n = variant_count(desc)
    for k in range(n):
        msg = cls()
        fill(msg, k)
        label = f"{where}: {desc.full_name} (variant {k})"
        if len(msg.ListFields()) != expected_set_fields(desc):
            unset = {f.name for f in desc.fields} - {f.name for f, _ in msg.ListFields()}
            failures.append(f"{label}: not every field is set: {sorted(unset)}")
        back = cls.FromString(msg.SerializeToString())
        if back != msg:
            failures.append(f"{label}: binary round trip differs")
        if json_format.Parse(json_format.MessageToJson(msg), cls()) != msg:
            failures.append(f"{label}: JSON round trip differs")
    return n


CALLABLE_KIND = {
    (False, False): grpc.UnaryUnaryMultiCallable,
    (False, True): grpc.UnaryStreamMultiCallable,
    (True, False): grpc.StreamUnaryMultiCallable,
    (True, True): grpc.StreamStreamMultiCallable,
}


def main(expected_files: list[str]) -> None:
    if "site-packages" not in (creditrisk.__file__ or ""):
        sys.exit(f"creditrisk imported from {creditrisk.__file__}, not from the installed wheel")
    modules = {}
    for info in pkgutil.walk_packages(creditrisk.__path__, "creditrisk."):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(info.name)
            modules[module.DESCRIPTOR.name] = module
    missing = sorted(set(expected_files) - set(modules))
    extra = sorted(set(modules) - set(expected_files))
    if missing or extra:
        sys.exit(f"proto files missing from the wheel: {missing}; unexpected: {extra}")

    services = rpcs = variants = 0
    channel = grpc.insecure_channel("localhost:9")  # never connected: stubs only
    for name in sorted(modules):
        module = modules[name]
        grpc_module = importlib.import_module(module.__name__ + "_grpc")
        for service in module.DESCRIPTOR.services_by_name.values():
            services += 1
            stub_cls = getattr(grpc_module, f"{service.name}Stub", None)
            servicer_cls = getattr(grpc_module, f"{service.name}Servicer", None)
            if stub_cls is None or servicer_cls is None:
                failures.append(f"{service.full_name}: no {service.name}Stub / {service.name}Servicer")
                continue
            if not callable(getattr(grpc_module, f"add_{service.name}Servicer_to_server", None)):
                failures.append(f"{service.full_name}: no add_{service.name}Servicer_to_server")
            stub = stub_cls(channel)
            for method in service.methods:
                rpcs += 1
                where = f"{service.name}.{method.name}"
                kind = CALLABLE_KIND[(method.client_streaming, method.server_streaming)]
                if not isinstance(getattr(stub, method.name, None), kind):
                    failures.append(f"{where}: stub method missing or not a {kind.__name__}")
                if not callable(getattr(servicer_cls, method.name, None)):
                    failures.append(f"{where}: servicer method missing")
                variants += check_message(method.input_type, where)
                variants += check_message(method.output_type, where)
    channel.close()
    # Every message type of every file too, nested ones included (map entries excluded).
    pending = [m for name in sorted(modules) for m in modules[name].DESCRIPTOR.message_types_by_name.values()]
    while pending:
        desc = pending.pop()
        pending.extend(n for n in desc.nested_types if not n.GetOptions().map_entry)
        variants += check_message(desc, desc.file.name)
    for oneof, branches in sorted(oneof_branches_all.items()):
        unseen = branches - oneof_branches_seen.get(oneof, set())
        if unseen:
            failures.append(f"oneof {oneof}: branches never set: {sorted(unseen)}")
    if services == 0 or failures:
        sys.exit("\n".join(failures) or "no services found")
    import google.protobuf

    print(
        json.dumps(
            {
                "files": len(modules),
                "services": services,
                "rpcs": rpcs,
                "messages_checked": variants,
                "oneofs": len(oneof_branches_all),
                "protobuf": google.protobuf.__version__,
                "grpcio": grpc.__version__,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
