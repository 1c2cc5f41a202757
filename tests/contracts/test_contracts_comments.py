"""Every element of the contracts is documented, and the contracts follow the repository's rules."""

from __future__ import annotations

from collections.abc import Iterator

from contracts_helpers import proto_files
from google.protobuf import descriptor_pb2

# Paths in SourceCodeInfo (descriptor.proto field numbers).
FILE_MESSAGE, FILE_ENUM, FILE_SERVICE = 4, 5, 6
MSG_FIELD, MSG_NESTED, MSG_ENUM, MSG_ONEOF = 2, 3, 4, 8
ENUM_VALUE, SERVICE_METHOD = 2, 2


def _files(descriptor_set: bytes) -> list[descriptor_pb2.FileDescriptorProto]:
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    return [f for f in fds.file if f.name.startswith("creditrisk/")]


def _enum(
    enum: descriptor_pb2.EnumDescriptorProto, path: tuple[int, ...], scope: str
) -> Iterator[tuple[tuple[int, ...], str]]:
    yield path, f"enum {scope}{enum.name}"
    for i, value in enumerate(enum.value):
        yield (*path, ENUM_VALUE, i), f"enum value {scope}{enum.name}.{value.name}"


def _message(
    msg: descriptor_pb2.DescriptorProto, path: tuple[int, ...], scope: str
) -> Iterator[tuple[tuple[int, ...], str]]:
    name = f"{scope}{msg.name}"
    yield path, f"message {name}"
    for i, field in enumerate(msg.field):
        yield (*path, MSG_FIELD, i), f"field {name}.{field.name}"
    synthetic = {f.oneof_index for f in msg.field if f.proto3_optional}
    for i, oneof in enumerate(msg.oneof_decl):
        if i not in synthetic:
            yield (*path, MSG_ONEOF, i), f"oneof {name}.{oneof.name}"
    for i, nested in enumerate(msg.nested_type):
        if not nested.options.map_entry:
            yield from _message(nested, (*path, MSG_NESTED, i), f"{name}.")
    for i, enum in enumerate(msg.enum_type):
        yield from _enum(enum, (*path, MSG_ENUM, i), f"{name}.")


def _elements(f: descriptor_pb2.FileDescriptorProto) -> Iterator[tuple[tuple[int, ...], str]]:
    scope = f"{f.package}."
    for i, msg in enumerate(f.message_type):
        yield from _message(msg, (FILE_MESSAGE, i), scope)
    for i, enum in enumerate(f.enum_type):
        yield from _enum(enum, (FILE_ENUM, i), scope)
    for i, service in enumerate(f.service):
        yield (FILE_SERVICE, i), f"service {scope}{service.name}"
        for j, method in enumerate(service.method):
            yield (FILE_SERVICE, i, SERVICE_METHOD, j), f"rpc {scope}{service.name}.{method.name}"


def test_every_element_has_a_leading_comment(descriptor_set: bytes) -> None:
    files = _files(descriptor_set)
    assert sorted(f.name for f in files) == proto_files()
    undocumented: list[str] = []
    checked = 0
    for f in files:
        comments = {tuple(loc.path): loc.leading_comments for loc in f.source_code_info.location}
        for path, what in _elements(f):
            checked += 1
            if not comments.get(path, "").strip():
                undocumented.append(f"{f.name}: {what}")
    assert checked > 500
    assert not undocumented, "elements without a leading comment:\n" + "\n".join(undocumented)


def test_rpcs_document_their_errors(descriptor_set: bytes) -> None:
    """Every RPC comment (or its service's) names the status codes it returns."""
    missing = []
    for f in _files(descriptor_set):
        comments = {tuple(loc.path): loc.leading_comments for loc in f.source_code_info.location}
        for i, service in enumerate(f.service):
            for j, method in enumerate(service.method):
                if "Errors:" not in comments[(FILE_SERVICE, i, SERVICE_METHOD, j)]:
                    missing.append(f"{service.name}.{method.name}")
    assert not missing, f"RPCs without an 'Errors:' paragraph: {missing}"


def test_only_well_known_types_are_imported_and_packages_match_paths(descriptor_set: bytes) -> None:
    for f in _files(descriptor_set):
        for dep in f.dependency:
            assert dep.startswith(("creditrisk/", "google/protobuf/")), f"{f.name} imports {dep}"
        assert f.syntax == "proto3", f.name
        directory = f.name.rsplit("/", 1)[0]
        assert f.package == directory.replace("/", "."), f"{f.name}: package {f.package}"
