"""Helpers of the auth tests: a test service in the default descriptor pool (so that the
runner's default-deny check and server reflection see its methods), keys and JWTs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf import wrappers_pb2 as _wrappers  # noqa: F401 - registers StringValue

AUTH_SERVICE = "creditrisk.authtest.v1.Guarded"
METHODS = {"Unary": (False, False), "Stream": (False, True), "Upload": (True, False), "Chat": (True, True)}


def register_test_service() -> None:
    """Add ``creditrisk.authtest.v1.Guarded`` (four methods, one per kind, StringValue) to the
    default descriptor pool, once."""
    pool = descriptor_pool.Default()
    try:
        pool.FindServiceByName(AUTH_SERVICE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto(
        name="creditrisk/authtest/v1/guarded.proto",
        package="creditrisk.authtest.v1",
        dependency=["google/protobuf/wrappers.proto"],
        syntax="proto3",
    )
    service = proto.service.add(name="Guarded")
    for name, (client_streaming, server_streaming) in METHODS.items():
        service.method.add(
            name=name,
            input_type=".google.protobuf.StringValue",
            output_type=".google.protobuf.StringValue",
            client_streaming=client_streaming,
            server_streaming=server_streaming,
        )
    pool.Add(proto)


def write_keys(path: Path, keys: dict[str, dict[str, Any]]) -> Path:
    path.write_text(json.dumps(keys))
    return path


class Issuer:
    """Signs JWTs with an RSA or Ed25519 key; :meth:`jwks` is its public key set."""

    def __init__(self, kid: str = "k1", kind: str = "rsa") -> None:
        self.kid = kid
        if kind == "rsa":
            self.key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.alg = "RS256"
        else:
            self.key = ed25519.Ed25519PrivateKey.generate()
            self.alg = "EdDSA"

    def jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=self.kid, alg=self.alg, use="sig")
        return jwk

    def token(
        self, *, sub: str = "alice", roles: Any = ("predict",), ttl_s: float = 300, **claims: Any
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {"sub": sub, "roles": list(roles) if not isinstance(roles, str) else roles}
        payload.update(iat=now, exp=now + int(ttl_s), iss="https://issuer.test", aud="creditrisk")
        payload.update(claims)
        payload = {key: value for key, value in payload.items() if value is not None}
        return jwt.encode(payload, self.key, algorithm=self.alg, headers={"kid": self.kid})


def jwks(*issuers: Issuer) -> str:
    return json.dumps({"keys": [issuer.jwk() for issuer in issuers]})
