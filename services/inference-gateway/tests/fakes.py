"""Contract-level fakes of the gateway's backends, served in-process on free ports.

* :class:`FakeFeatureStore`: ``FeatureStoreServiceServicer`` (GetOnlineFeatures, GetFeatureService)
  with a health service; can be switched down or slowed.
* :class:`FakeRegistry`: ``ModelRegistryServiceServicer`` (GetModelVersion, WatchAliases with a
  snapshot then changes; bearer token checked).
* :class:`FakeDrift`: ``DriftServiceServicer`` (LogPredictions, idempotent by event id); can be
  switched down and up.
* :class:`FakeModelServer`: a small HTTP app speaking Seldon ``jsonData`` and V2 REST, answering
  the version and threshold it serves in its response; slow / not ready / version switch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import grpc
import orjson
import uvicorn
from creditrisk.common.v1 import values_pb2
from creditrisk.drift.v1 import drift_service_pb2 as dpb
from creditrisk.drift.v1 import drift_service_pb2_grpc as dgrpc
from creditrisk.feature.v1 import feature_service_pb2 as fpb
from creditrisk.feature.v1 import feature_service_pb2_grpc as fgrpc
from creditrisk.registry.v1 import registry_service_pb2 as rpb
from creditrisk.registry.v1 import registry_service_pb2_grpc as rgrpc
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

INT64, DOUBLE, STRING = (
    values_pb2.VALUE_TYPE_INT64,
    values_pb2.VALUE_TYPE_DOUBLE,
    values_pb2.VALUE_TYPE_STRING,
)
TOKEN = "viewer-token"
MODEL = "credit-risk"

# Stored features of the fake feature service "credit_risk_v1" and their types.
STORED = {"duration_in_month": INT64, "credit_amount": INT64, "age": INT64, "purpose": STRING}
#: The request values the real feature-service advertises for ``credit_risk_v1``: its request
#: source's fields under their caller-facing names (the product's ``[serving.request_fields]``); it also
#: accepts the source's own names (``requested_credit_amount``, ``requested_duration_in_month``).
REQUEST_VALUES = {"credit_amount": INT64, "duration_in_month": INT64}
REQUEST_ALIASES = {
    "credit_amount": "credit_amount",
    "requested_credit_amount": "credit_amount",
    "duration_in_month": "duration_in_month",
    "requested_duration_in_month": "duration_in_month",
}
# The model signature: the stored features + the on-demand "monthly_installment".
SIGNATURE = {**STORED, "monthly_installment": DOUBLE}


def fv(value: Any) -> values_pb2.FeatureValue:
    if value is None:
        return values_pb2.FeatureValue(null_value=0)
    if isinstance(value, bool):
        return values_pb2.FeatureValue(bool_value=value)
    if isinstance(value, int):
        return values_pb2.FeatureValue(int64_value=value)
    if isinstance(value, float):
        return values_pb2.FeatureValue(double_value=value)
    return values_pb2.FeatureValue(string_value=value)


def plain(value: values_pb2.FeatureValue) -> Any:
    kind = value.WhichOneof("kind")
    return None if kind in (None, "null_value") else getattr(value, kind)


async def _grpc_server(
    register: Any, credentials: grpc.ServerCredentials | None = None
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, port, health_servicer


class FakeFeatureStore(fgrpc.FeatureStoreServiceServicer):
    """Applicants' stored rows by id; ``statuses[(id, feature)]`` overrides a cell's status."""

    def __init__(self) -> None:
        self.credentials: grpc.ServerCredentials | None = None  # TLS when set
        self.rows: dict[int, dict[str, Any]] = {}
        self.statuses: dict[tuple[int, str], int] = {}
        self.down = False
        self.failing = False  # answers INTERNAL (a failure of the feature-service's own store)
        self.refusing = False  # answers UNAUTHENTICATED (the gateway's credential not known there)
        self.delay_s = 0.0
        self.calls = 0
        self.port = 0
        self.traceparents: list[str | None] = []  # of each GetOnlineFeatures call
        self.join_key = "applicant_id"  # the product's entity join key the gateway must send
        self.feature_services: list[str] = []  # the feature service each call named

    async def _gate(self, context: Any) -> None:
        self.calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "feature store down")
        if self.failing:
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see server log")
        if self.refusing:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown API key")

    async def GetFeatureService(self, request: Any, context: Any) -> Any:
        await self._gate(context)
        self.feature_services.append(request.name)
        fs = fpb.FeatureService(name="credit_risk_v1", version="1")
        fs.projections.add(
            feature_view="applicant",
            features=[values_pb2.FeatureSpec(name=n, value_type=t) for n, t in STORED.items()],
        )
        fs.projections.add(
            feature_view="loan_affordability",
            features=[values_pb2.FeatureSpec(name="monthly_installment", value_type=DOUBLE)],
        )
        fs.request_values.extend(
            values_pb2.FeatureSpec(name=n, value_type=t) for n, t in REQUEST_VALUES.items()
        )
        return fpb.GetFeatureServiceResponse(feature_service=fs)

    async def GetOnlineFeatures(self, request: Any, context: Any) -> Any:
        self.traceparents.append(dict(context.invocation_metadata() or ()).get("traceparent"))
        await self._gate(context)
        self.feature_services.append(request.feature_service)
        specs = [
            *(values_pb2.FeatureSpec(name=n, value_type=t) for n, t in STORED.items()),
            values_pb2.FeatureSpec(name="monthly_installment", value_type=DOUBLE),
        ]
        response = fpb.GetOnlineFeaturesResponse(features=specs, feature_service_version="1")
        stamp = timestamp_pb2.Timestamp(seconds=1_700_000_000)
        for entity in request.entity_rows:
            if list(entity.join_keys) != [self.join_key]:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"join keys {list(entity.join_keys)}")
            applicant = entity.join_keys[self.join_key].int64_value
            stored = self.rows.get(applicant)
            out = response.rows.add()
            for name in STORED:
                status = self.statuses.get((applicant, name))
                if stored is None:
                    out.values.add(value=fv(None), status=fpb.FEATURE_STATUS_MISSING)
                elif status is not None:
                    out.values.add(value=fv(None), status=status, event_timestamp=stamp)
                elif stored.get(name) is None:
                    out.values.add(
                        value=fv(None), status=fpb.FEATURE_STATUS_NULL_VALUE, event_timestamp=stamp
                    )
                else:
                    out.values.add(
                        value=fv(stored[name]), status=fpb.FEATURE_STATUS_PRESENT, event_timestamp=stamp
                    )
            # The on-demand view: a non-null request value replaces the stored one.
            given = {
                REQUEST_ALIASES[name]: plain(value)
                for name, value in entity.request_values.items()
                if name in REQUEST_ALIASES
            }
            amount = given.get("credit_amount")
            if amount is None and stored is not None:
                amount = stored.get("credit_amount")
            duration = given.get("duration_in_month")
            if duration is None and stored is not None:
                duration = stored.get("duration_in_month")
            if amount is not None and duration:
                out.values.add(value=fv(amount / duration), status=fpb.FEATURE_STATUS_PRESENT)
            else:
                out.values.add(value=fv(None), status=fpb.FEATURE_STATUS_NULL_VALUE)
        return response

    async def start(self) -> None:
        self.server, self.port, self.health = await _grpc_server(
            lambda s: fgrpc.add_FeatureStoreServiceServicer_to_server(self, s), self.credentials
        )

    async def stop(self) -> None:
        await self.server.stop(0)


@dataclass
class VersionSpec:
    threshold: float
    required: set[str] = field(default_factory=lambda: {"duration_in_month"})
    extra_required_tag: str = "credit_amount"


class FakeRegistry(rgrpc.ModelRegistryServiceServicer):
    """Versions of one model and its aliases; :meth:`set_alias` streams a change to watchers."""

    def __init__(self) -> None:
        self.credentials: grpc.ServerCredentials | None = None  # TLS when set
        self.versions: dict[int, VersionSpec] = {1: VersionSpec(0.5), 2: VersionSpec(0.3)}
        self.aliases: dict[str, int] = {"champion": 1}
        self.sequence = 0
        self._watchers: list[asyncio.Queue[Any]] = []
        self.get_calls = 0
        self.port = 0
        self.token = TOKEN  # the one credential accepted (read_registry)
        # set: these methods answer this refusal whatever the credential (a role missing)
        self.refusing: grpc.StatusCode | None = None
        self.refusing_methods = {"GetModelVersion", "WatchAliases"}
        self.authorizations: list[str | None] = []  # the authorization of each call

    async def _auth(self, context: Any, method: str) -> None:
        sent = dict(context.invocation_metadata()).get("authorization")
        self.authorizations.append(sent)
        if self.refusing is not None and method in self.refusing_methods:
            await context.abort(self.refusing, "role read_registry missing")
        if sent != f"Bearer {self.token}":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")

    async def GetModelVersion(self, request: Any, context: Any) -> Any:
        await self._auth(context, "GetModelVersion")
        self.get_calls += 1
        version = request.model.version or self.aliases.get(request.model.alias, 0)
        spec = self.versions.get(version)
        if spec is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such version")
        mv = rpb.ModelVersion(name=MODEL, version=version, decision_threshold=spec.threshold)
        for name, kind in SIGNATURE.items():
            mv.signature.inputs.add(name=name, value_type=kind, required=name in spec.required)
        mv.tags["registry.required_inputs"] = spec.extra_required_tag
        mv.lineage.feature_service.name = "credit_risk_v1"
        mv.lineage.feature_service.version = "1"
        return rpb.GetModelVersionResponse(model_version=mv)

    async def WatchAliases(self, request: Any, context: Any) -> Any:
        await self._auth(context, "WatchAliases")
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._watchers.append(queue)
        try:
            snapshot = rpb.AliasSnapshot(sequence=self.sequence)
            for alias, version in self.aliases.items():
                snapshot.aliases.add(model_name=MODEL, alias=alias, version=version)
            yield rpb.WatchAliasesResponse(snapshot=snapshot)
            while True:
                change = await queue.get()
                yield rpb.WatchAliasesResponse(change=change)
        finally:
            self._watchers.remove(queue)

    def set_alias(self, alias: str, version: int) -> None:
        self.sequence += 1
        before = self.aliases.get(alias)
        self.aliases[alias] = version
        change = rpb.AliasChange(model_name=MODEL, alias=alias, to_version=version, sequence=self.sequence)
        if before is not None:
            change.from_version = before
        for queue in self._watchers:
            queue.put_nowait(change)

    async def start(self) -> None:
        self.server, self.port, self.health = await _grpc_server(
            lambda s: rgrpc.add_ModelRegistryServiceServicer_to_server(self, s), self.credentials
        )

    async def stop(self) -> None:
        await self.server.stop(0)


class FakeDrift(dgrpc.DriftServiceServicer):
    """Stores events by id (idempotent); ``down`` answers UNAVAILABLE."""

    def __init__(self) -> None:
        self.credentials: grpc.ServerCredentials | None = None  # TLS when set
        self.events: dict[str, dpb.PredictionEvent] = {}
        self.duplicates = 0
        self.down = False
        self.refusing: grpc.StatusCode | None = None  # set: the gateway's credential refused so
        self.calls = 0
        self.port = 0

    async def LogPredictions(self, request: Any, context: Any) -> Any:
        self.calls += 1
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "drift down")
        if self.refusing is not None:
            await context.abort(self.refusing, "unknown API key")
        accepted = 0
        for event in request.events:
            if event.event_id in self.events:
                self.duplicates += 1
            else:
                self.events[event.event_id] = event
                accepted += 1
        return dpb.LogPredictionsResponse(accepted=accepted, duplicates=len(request.events) - accepted)

    async def start(self) -> None:
        self.server, self.port, self.health = await _grpc_server(
            lambda s: dgrpc.add_DriftServiceServicer_to_server(self, s), self.credentials
        )

    async def stop(self) -> None:
        await self.server.stop(0)


def probability(record: dict[str, Any], version: int) -> float:
    """A deterministic score: larger amounts and longer durations are riskier."""
    amount = record.get("credit_amount") or 5000
    duration = record.get("duration_in_month") or 24
    p = min(amount / 20000, 1.0) * 0.6 + min(duration / 72, 1.0) * 0.4
    return round(min(max(p - 0.02 * (version - 1), 0.0), 1.0), 6)


class FakeModelServer:
    """One slot's model server: Seldon ``jsonData`` + V2 REST, readiness routes, switches."""

    def __init__(self, version: int, thresholds: dict[int, float], *, name: str = MODEL) -> None:
        self.version = version
        self.thresholds = thresholds
        self.name = name
        self.ready = True
        self.delay_s = 0.0
        self.ready_delay_s = 0.0  # a readiness route that answers late (an overloaded server)
        self.swapping = False  # readiness 503 with "serving": true (the model-server mid-swap)
        self.records: list[dict[str, Any]] = []
        self.traceparents: list[str | None] = []
        self.authorizations: list[str | None] = []  # the authorization header of each scoring call
        self.required_authorization: str | None = None  # set: other callers get the slot's 401
        self.refusal_status = 401  # or 403: the slot's answer when it refuses (a role missing)
        self.port = 0
        self.nan = False
        app = Starlette(
            routes=[
                Route("/api/v1.0/predictions", self._seldon, methods=["POST"]),
                Route("/health/ready", self._ready, methods=["GET"]),
                Route(f"/v2/models/{name}/infer", self._v2, methods=["POST"]),
                Route(f"/v2/models/{name}/ready", self._ready, methods=["GET"]),
            ]
        )
        self._app = app
        self.tls: dict[str, Any] = {}
        """uvicorn ``ssl_*`` arguments (HTTPS when set, before :meth:`start`)."""
        self._server = uvicorn.Server(uvicorn.Config(app))
        self._task: asyncio.Task[None] | None = None

    async def _ready(self, request: Request) -> Response:
        if self.ready_delay_s:
            await asyncio.sleep(self.ready_delay_s)
        if self.swapping and self.ready:
            body = {
                "ready": False,
                "serving": True,
                "reason": "swapping: processes serve versions ['1', '2']",
            }
            return Response(orjson.dumps(body), status_code=503)
        return Response(b"{}", status_code=200 if self.ready else 503)

    def _refused(self, request: Request) -> Response | None:
        """The model-server's 401 (model_server.access) when the credential is not the required one."""
        sent = request.headers.get("authorization")
        self.authorizations.append(sent)
        if self.required_authorization is None or sent == self.required_authorization:
            return None
        if self.refusal_status == 403:
            body = {"error": {"code": 7, "status": "PERMISSION_DENIED", "message": "role predict missing"}}
            return Response(orjson.dumps(body), status_code=403)
        body = {"error": {"code": 16, "status": "UNAUTHENTICATED", "message": "unknown API key"}}
        return Response(orjson.dumps(body), status_code=401, headers={"www-authenticate": "Bearer"})

    async def _score(self, record: dict[str, Any]) -> tuple[float, int, float] | Response:
        version = self.version  # the version serving when the request arrived
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if not self.ready:
            return Response(b'{"status": {"info": "not loaded"}}', status_code=503)
        if set(record) != set(SIGNATURE):
            return Response(b'{"status": {"info": "bad input"}}', status_code=400)
        self.records.append(record)
        p = math.nan if self.nan else probability(record, version)
        return p, version, self.thresholds[version]

    async def _seldon(self, request: Request) -> Response:
        self.traceparents.append(request.headers.get("traceparent"))
        if (refused := self._refused(request)) is not None:
            return refused
        body = orjson.loads(await request.body())
        scored = await self._score(body["jsonData"])
        if isinstance(scored, Response):
            return scored
        p, version, threshold = scored
        decision = "reject" if p >= threshold else "approve"
        out = {
            "jsonData": {
                "probability_of_default": [p],
                "decision": [decision],
                "model_name": self.name,
                "model_version": version,
                "decision_threshold": threshold,
            },
            "meta": {
                "tags": {
                    "model_name": self.name,
                    "model_version": version,
                    "alias": "champion",
                    "decision_threshold": threshold,
                    "decision": decision,
                }
            },
        }
        # json.dumps writes NaN as the bare token NaN (not JSON): what a careless server sends.
        content = json.dumps(out).encode() if self.nan else orjson.dumps(out)
        return Response(content, media_type="application/json")

    async def _v2(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        body = orjson.loads(await request.body())
        record = {}
        for inp in body["inputs"]:
            expected = {INT64: "INT64", DOUBLE: "FP64", STRING: "BYTES"}[SIGNATURE[inp["name"]]]
            if inp["datatype"] != expected or inp["shape"] != [1]:
                return Response(b"{}", status_code=400)
            record[inp["name"]] = inp["data"][0]
        scored = await self._score(record)
        if isinstance(scored, Response):
            return scored
        p, version, threshold = scored
        out = {
            "model_name": self.name,
            "model_version": str(version),
            "parameters": {
                "registered_model": self.name,
                "alias": "champion",
                "decision_threshold": repr(threshold),
            },
            "outputs": [
                {"name": "probability_of_default", "shape": [1], "datatype": "FP64", "data": [p]},
                {"name": "decision", "shape": [1], "datatype": "BYTES", "data": ["approve"]},
            ],
        }
        return Response(orjson.dumps(out), media_type="application/json")

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}" if self.tls else f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = uvicorn.Server(
            uvicorn.Config(
                self._app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", **self.tls
            )
        )
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, no event
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
