"""creditrisk_kit.auth: API keys, JWTs, settings, the gRPC interceptor with default deny, the
outgoing credential, the HTTP middleware and the exit status 2 without a credential source."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import jwt
import pytest
from auth_support import AUTH_SERVICE, Issuer, jwks, register_test_service, write_keys
from creditrisk_kit import ServiceRunner, ServiceSettings, Unauthenticated, aio_channel
from creditrisk_kit.auth import (
    PUBLIC,
    ApiKeys,
    AuthConfigurationError,
    Authenticator,
    CredentialSource,
    JwtVerifier,
    MethodPolicy,
    Role,
    bearer_interceptors,
    current_principal,
    parse_api_keys,
)
from creditrisk_kit.health import HEALTH_LIST_REQUEST, HEALTH_LIST_RESPONSE, LIST_METHOD
from google.protobuf.wrappers_pb2 import StringValue
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kit_support import settings as kit_settings
from pydantic import ValidationError

register_test_service()

KEYS = {
    "predict-key-0001": {"subject": "gateway", "roles": ["predict"]},
    "writer-key-0002": {"subject": "pusher", "roles": ["write_features", "read_features"]},
    "admin-key-00003": {"subject": "root", "roles": ["admin"]},
}
POLICY = MethodPolicy.for_service(
    AUTH_SERVICE,
    {"Unary": Role.PREDICT, "Stream": Role.READ_FEATURES, "Upload": Role.WRITE_FEATURES, "Chat": PUBLIC},
)
_SER = {"request_serializer": StringValue.SerializeToString, "response_deserializer": StringValue.FromString}


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


# --- API keys -------------------------------------------------------------------------------


def test_api_keys_lookup_and_file_rotation(tmp_path: Path) -> None:
    path = write_keys(tmp_path / "keys.json", KEYS)
    keys = ApiKeys(file=path)
    found = keys.lookup("predict-key-0001")
    assert found is not None
    assert found.subject == "gateway"
    assert found.roles == {Role.PREDICT}
    assert keys.lookup("predict-key-0002") is None
    assert keys.lookup("") is None
    write_keys(path, {"rotated-key-0004": {"subject": "gateway", "roles": ["predict"]}})
    os.utime(path, ns=(1, 1))  # a different mtime even within the clock's resolution
    assert keys.lookup("predict-key-0001") is None
    assert keys.lookup("rotated-key-0004") is not None
    path.write_text("{not json")  # a broken rotation keeps the last good keys
    os.utime(path, ns=(2, 2))
    assert keys.lookup("rotated-key-0004") is not None


def test_api_key_mapping_errors_name_the_entry_never_the_key() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        parse_api_keys("{", "X")
    with pytest.raises(ValueError, match="entry #1 is invalid") as info:
        parse_api_keys('{"secret-key-1": {"subject": "a", "roles": ["fly"]}}', "X")
    assert "secret-key-1" not in str(info.value)
    with pytest.raises(ValueError, match="roles"):
        parse_api_keys('{"secret-key-1": {"subject": "a", "roles": []}}', "X")


# --- JWT ---------------------------------------------------------------------------------


@pytest.fixture
def issuer() -> Issuer:
    return Issuer("k1", "rsa")


@pytest.fixture
def verifier(tmp_path: Path, issuer: Issuer) -> JwtVerifier:
    path = tmp_path / "jwks.json"
    path.write_text(jwks(issuer))
    return JwtVerifier(jwks_file=path, issuer="https://issuer.test", audience="creditrisk")


def test_valid_jwt_gives_subject_and_known_roles(verifier: JwtVerifier, issuer: Issuer) -> None:
    principal = verifier.verify(issuer.token(sub="svc", roles=["train", "read_registry", "pilot"]))
    assert principal.subject == "svc"
    assert principal.roles == {Role.TRAIN, Role.READ_REGISTRY}
    assert principal.via == "jwt"
    assert verifier.verify(issuer.token(roles="predict admin")).roles == {Role.PREDICT, Role.ADMIN}


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"ttl_s": -120}, "expired"),
        ({"nbf": 2**31}, "not yet valid"),
        ({"aud": "someone-else"}, "wrong audience"),
        ({"iss": "https://evil.test"}, "wrong issuer"),
        ({"exp": None}, "'exp' claim"),
        ({"sub": None}, "'sub' claim"),
    ],
)
def test_jwt_refusals_name_what_is_wrong(
    verifier: JwtVerifier, issuer: Issuer, claims: dict[str, Any], message: str
) -> None:
    token = issuer.token(**claims)
    with pytest.raises(Unauthenticated, match=message) as info:
        verifier.verify(token)
    assert token not in str(info.value)


def test_jwt_leeway_accepts_a_token_expired_seconds_ago(verifier: JwtVerifier, issuer: Issuer) -> None:
    assert verifier.verify(issuer.token(ttl_s=-5)).subject == "alice"


def test_jwt_forgeries_are_refused(verifier: JwtVerifier, issuer: Issuer) -> None:
    impostor = Issuer("k1", "rsa")  # same kid, another key
    with pytest.raises(Unauthenticated, match="bad signature"):
        verifier.verify(impostor.token())
    with pytest.raises(Unauthenticated, match="key id"):
        verifier.verify(Issuer("k9", "rsa").token())
    unsigned = jwt.encode({"sub": "x", "exp": 2**31}, key=None, algorithm="none", headers={"kid": "k1"})
    with pytest.raises(Unauthenticated, match="algorithm not allowed"):
        verifier.verify(unsigned)
    # HS256 with the public key as the secret (the algorithm-confusion attack)
    hs = jwt.api_jws.PyJWS()
    public_jwk = issuer.jwk()
    forged = hs.encode(
        b'{"sub":"x","exp":2147483647}',
        key=str(public_jwk["n"]).encode(),
        algorithm="HS256",
        headers={"kid": "k1"},
    )
    with pytest.raises(Unauthenticated, match="algorithm not allowed"):
        verifier.verify(forged)
    with pytest.raises(Unauthenticated, match="malformed"):
        verifier.verify("eyJ.not.jwt")


def test_jwks_file_rotation_adds_a_key(tmp_path: Path, issuer: Issuer) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(jwks(issuer))
    verifier = JwtVerifier(jwks_file=path, audience="creditrisk")
    new = Issuer("k2", "ed25519")
    with pytest.raises(Unauthenticated):
        verifier.verify(new.token())
    path.write_text(jwks(issuer, new))
    os.utime(path, ns=(1, 1))
    assert verifier.verify(new.token(sub="bob")).subject == "bob"
    assert verifier.verify(issuer.token()).subject == "alice"


# --- settings and the authenticator -----------------------------------------------------


def test_settings_refuse_symmetric_algorithms_and_bad_key_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValidationError, match="HS256 refused"):
        ServiceSettings(auth_jwt_algorithms=["RS256", "HS256"])
    with pytest.raises(ValidationError, match="none refused"):
        ServiceSettings(auth_jwt_algorithms=["none"])
    monkeypatch.setenv("SERVICE_AUTH_API_KEYS", '{"top-secret-key": {"subject": "a", "roles": ["x"]}}')
    with pytest.raises(SystemExit) as info:
        ServiceSettings.load_or_exit()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "SERVICE_AUTH_API_KEYS" in err
    assert "entry #1 is invalid" in err
    assert "top-secret-key" not in err


def test_no_credential_source_names_the_settings() -> None:
    with pytest.raises(AuthConfigurationError, match=r"SERVICE_AUTH_API_KEYS_FILE.*SERVICE_AUTH_JWKS_URL"):
        Authenticator.from_settings(ServiceSettings())
    assert Authenticator.from_settings(ServiceSettings(auth_disabled=True)).disabled


def test_authenticator_messages(tmp_path: Path, issuer: Issuer) -> None:
    (tmp_path / "jwks.json").write_text(jwks(issuer))
    auth = Authenticator.from_settings(
        ServiceSettings(
            auth_api_keys='{"predict-key-0001": {"subject": "gw", "roles": ["predict"]}}',
            auth_jwks_file=tmp_path / "jwks.json",
            auth_jwt_issuer="https://issuer.test",
            auth_jwt_audience="creditrisk",
        )
    )
    with pytest.raises(Unauthenticated, match="missing credential"):
        auth.authenticate(None)
    with pytest.raises(Unauthenticated, match="malformed 'authorization'"):
        auth.authenticate("Basic dXNlcjpwYXNz")
    with pytest.raises(Unauthenticated, match="unknown API key"):
        auth.authenticate("Bearer nope")
    assert auth.authenticate("bearer predict-key-0001", "/x/Y").method == "/x/Y"
    assert auth.authenticate(f"Bearer {issuer.token(sub='svc')}").subject == "svc"


# --- gRPC -------------------------------------------------------------------------------------


def _guarded() -> grpc.GenericRpcHandler:
    async def unary(request: StringValue, context: Any) -> StringValue:
        principal = current_principal()
        return StringValue(value=principal.subject if principal else "anonymous")

    async def stream(request: StringValue, context: Any) -> AsyncIterator[StringValue]:
        principal = current_principal()
        yield StringValue(value=principal.subject if principal else "anonymous")

    async def upload(requests: AsyncIterator[StringValue], context: Any) -> StringValue:
        return StringValue(value=",".join([r.value async for r in requests]))

    async def chat(requests: AsyncIterator[StringValue], context: Any) -> AsyncIterator[StringValue]:
        async for request in requests:
            yield request

    ser = {
        "request_deserializer": StringValue.FromString,
        "response_serializer": StringValue.SerializeToString,
    }
    return grpc.method_handlers_generic_handler(
        AUTH_SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary, **ser),
            "Stream": grpc.unary_stream_rpc_method_handler(stream, **ser),
            "Upload": grpc.stream_unary_rpc_method_handler(upload, **ser),
            "Chat": grpc.stream_stream_rpc_method_handler(chat, **ser),
        },
    )


def _runner(policy: MethodPolicy, **overrides: Any) -> ServiceRunner:
    values: dict[str, Any] = {"auth_api_keys": __import__("json").dumps(KEYS)}
    values.update(overrides)
    return ServiceRunner(
        kit_settings(**values),
        service_names=[AUTH_SERVICE],
        register=lambda server: server.add_generic_rpc_handlers((_guarded(),)),
        auth=policy,
    )


@pytest.fixture
async def guarded() -> AsyncIterator[ServiceRunner]:
    runner = _runner(POLICY)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


async def _codes(channel: grpc.aio.Channel, metadata: Any) -> dict[str, grpc.StatusCode]:
    calls = {
        "Unary": lambda: channel.unary_unary(f"/{AUTH_SERVICE}/Unary", **_SER)(
            StringValue(value="a"), metadata=metadata
        ),
        "Stream": lambda: _drain(
            channel.unary_stream(f"/{AUTH_SERVICE}/Stream", **_SER)(StringValue(), metadata=metadata)
        ),
        "Upload": lambda: channel.stream_unary(f"/{AUTH_SERVICE}/Upload", **_SER)(
            iter([StringValue(value="x")]), metadata=metadata
        ),
    }
    codes: dict[str, grpc.StatusCode] = {}
    details: dict[str, str] = {}
    for name, call in calls.items():
        try:
            await call()
            codes[name] = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            codes[name] = exc.code()
            details[name] = exc.details() or ""
    assert not any("key-000" in text for text in details.values())
    return codes


async def _drain(call: Any) -> list[Any]:
    return [item async for item in call]


async def test_interceptor_refuses_missing_wrong_and_lower_roles(guarded: ServiceRunner) -> None:
    unauth, denied, ok = (
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.OK,
    )
    async with aio_channel(f"127.0.0.1:{guarded.port}") as channel:
        assert set((await _codes(channel, None)).values()) == {unauth}
        assert set((await _codes(channel, bearer("wrong-key"))).values()) == {unauth}
        assert await _codes(channel, bearer("predict-key-0001")) == {
            "Unary": ok,
            "Stream": denied,
            "Upload": denied,
        }
        assert await _codes(channel, bearer("writer-key-0002")) == {
            "Unary": denied,
            "Stream": ok,
            "Upload": ok,
        }
        assert set((await _codes(channel, bearer("admin-key-00003"))).values()) == {ok}
        unary = channel.unary_unary(f"/{AUTH_SERVICE}/Unary", **_SER)
        assert (await unary(StringValue(), metadata=bearer("admin-key-00003"))).value == "root"
        chat = channel.stream_stream(f"/{AUTH_SERVICE}/Chat", **_SER)
        assert [r.value for r in await _drain(chat(iter([StringValue(value="hi")])))] == ["hi"]
        health = health_pb2_grpc.HealthStub(channel)
        await health.Check(health_pb2.HealthCheckRequest(service="liveness"))  # public
        listed = await channel.unary_unary(  # public too, and answered (was INTERNAL)
            LIST_METHOD,
            request_serializer=HEALTH_LIST_REQUEST.SerializeToString,
            response_deserializer=HEALTH_LIST_RESPONSE.FromString,
        )(HEALTH_LIST_REQUEST())
        assert set(listed.statuses) == {"", AUTH_SERVICE, "liveness"}


async def test_outgoing_credential_interceptors(guarded: ServiceRunner, tmp_path: Path) -> None:
    path = tmp_path / "credential"
    path.write_text("predict-key-0001\n")
    source = CredentialSource(file=path)
    async with aio_channel(f"127.0.0.1:{guarded.port}", interceptors=bearer_interceptors(source)) as channel:
        codes = await _codes(channel, None)
        assert codes["Unary"] == grpc.StatusCode.OK
        assert codes["Stream"] == grpc.StatusCode.PERMISSION_DENIED
        path.write_text("admin-key-00003")
        os.utime(path, ns=(1, 1))
        assert set((await _codes(channel, None)).values()) == {grpc.StatusCode.OK}
    assert "admin-key" not in repr(source)


async def test_default_deny_refuses_to_start_without_an_entry_per_method() -> None:
    partial = MethodPolicy.for_service(AUTH_SERVICE, {"Unary": Role.PREDICT, "Stream": Role.PREDICT})
    with pytest.raises(ValueError, match=r"Guarded/Chat.*Guarded/Upload"):
        await _runner(partial).start()
    extra = POLICY | MethodPolicy.for_service(AUTH_SERVICE, {"Removed": Role.ADMIN})
    with pytest.raises(
        ValueError, match=r"names no served method: /creditrisk\.authtest\.v1\.Guarded/Removed"
    ):
        await _runner(extra).start()


async def test_auth_disabled_serves_everyone_as_anonymous_admin() -> None:
    runner = _runner(POLICY, auth_api_keys=None, auth_disabled=True)
    await runner.start()
    try:
        async with aio_channel(f"127.0.0.1:{runner.port}") as channel:
            unary = channel.unary_unary(f"/{AUTH_SERVICE}/Unary", **_SER)
            assert (await unary(StringValue())).value == "anonymous"
    finally:
        await runner.stop()


@pytest.mark.slow  # a Python subprocess: seconds of imports
def test_run_service_exits_2_without_a_credential_source(tmp_path: Path) -> None:
    script = tmp_path / "svc.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            from auth_support import AUTH_SERVICE, register_test_service
            from creditrisk_kit import Service, ServiceSettings, ServiceSpec, run_service
            from creditrisk_kit.auth import MethodPolicy, Role
            register_test_service()
            methods = ("Unary", "Stream", "Upload", "Chat")
            policy = MethodPolicy.for_service(AUTH_SERVICE, {{m: Role.ADMIN for m in methods}})
            def build(settings):
                return Service(service_names=[AUTH_SERVICE], register=lambda server: None, auth=policy)
            run_service(ServiceSpec("guarded", ServiceSettings, build))
            """
        )
    )
    env = {**os.environ, "SERVICE_PORT": "0", "SERVICE_HOST": "127.0.0.1", "OTEL_SDK_DISABLED": "true"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "SERVICE_AUTH_API_KEYS_FILE" in done.stderr
    assert "SERVICE_AUTH_DISABLED" in done.stderr


# --- HTTP -------------------------------------------------------------------------------------


def _http_app() -> Any:
    from creditrisk_kit.auth.http import AuthMiddleware
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def whoami(request: Request) -> JSONResponse:
        principal = current_principal()
        return JSONResponse({"subject": principal.subject if principal else None})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route("/v1/predict", whoami, methods=["POST"]),
            Route("/v1/models/{name}", whoami, methods=["GET"]),
            Route("/v1/unlisted", whoami, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
        ]
    )
    policy = {"POST /v1/predict": Role.PREDICT, "/v1/models/{name}": Role.READ_REGISTRY}
    auth = Authenticator(ApiKeys(parse_api_keys(__import__("json").dumps(KEYS), "keys")))
    app.add_middleware(AuthMiddleware, authenticator=auth, policy=policy)
    return app, policy


async def test_http_middleware_roles_and_default_deny() -> None:
    import httpx
    from creditrisk_kit.auth.http import check_routes

    app, policy = _http_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        await _http_checks(client)
    with pytest.raises(ValueError, match="GET /v1/unlisted"):
        check_routes(app, policy)


async def _http_checks(client: Any) -> None:
    assert (await client.get("/healthz")).status_code == 200
    refused = await client.post("/v1/predict")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert refused.json()["error"]["status"] == "UNAUTHENTICATED"
    assert (await client.post("/v1/predict", headers={"authorization": "Bearer wrong"})).status_code == 401
    predict = {"authorization": "Bearer predict-key-0001"}
    assert (await client.post("/v1/predict", headers=predict)).json() == {"subject": "gateway"}
    assert (await client.get("/v1/models/m1", headers=predict)).status_code == 403
    assert (
        await client.get("/v1/models/m1", headers={"authorization": "Bearer admin-key-00003"})
    ).status_code == 200
    assert (
        await client.get("/v1/unlisted", headers={"authorization": "Bearer admin-key-00003"})
    ).status_code == 403
    assert (await client.get("/nowhere", headers=predict)).status_code == 404


def test_jwt_without_issuer_or_audience_is_refused_at_start(tmp_path: Path, issuer: Issuer) -> None:
    (tmp_path / "jwks.json").write_text(jwks(issuer))
    for given, missing in (
        ({}, r"SERVICE_AUTH_JWT_ISSUER and SERVICE_AUTH_JWT_AUDIENCE"),
        ({"auth_jwt_issuer": "https://issuer.test"}, r"needs SERVICE_AUTH_JWT_AUDIENCE:"),
        ({"auth_jwt_audience": "creditrisk"}, r"needs SERVICE_AUTH_JWT_ISSUER:"),
    ):
        with pytest.raises(AuthConfigurationError, match=missing):
            Authenticator.from_settings(ServiceSettings(auth_jwks_file=tmp_path / "jwks.json", **given))
