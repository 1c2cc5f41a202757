"""Model-server client: one interface, two protocols, chosen by configuration.

* ``seldon``: the Seldon protocol over REST, ``POST /api/v1.0/predictions`` with
  ``{"jsonData": {feature: value}}`` (records by name keep JSON types; ``ndarray`` would turn every
  column into text). The answer's ``meta.tags`` name the model, version and decision threshold of
  the version that scored THIS request; ``jsonData.probability_of_default`` is a list of one.
  Readiness: ``GET /health/ready``; a 503 whose body says ``"serving": true`` (the slot's
  processes are swapping versions: each can score, each answer names its version) keeps the slot
  in routing, so a champion swap fails no request.
* ``v2``: the Open Inference Protocol V2 over REST, ``POST /v2/models/<name>/infer`` with one typed
  input per feature (``FP64`` / ``INT64`` / ``BYTES`` / ``BOOL``, shape ``[1]``, JSON ``null`` for a
  missing value); the answer's ``model_version`` and ``parameters.decision_threshold`` name the
  version that scored it. Readiness: ``GET /v2/models/<name>/ready``.

V2 over gRPC is not offered: the well-kept client libraries that carry its generated types
(``tritonclient[grpc]`` 2.73 needs protobuf < 7; ``mlserver`` pins protobuf 5.29) cannot be
installed beside the contracts' protobuf 7 runtime of this environment (see the README).

Connections are pooled and kept alive (one ``aiohttp.ClientSession`` per slot, created on first
use inside the running event loop; idle connections close after ``keepalive_s``, below the model
server's own keep-alive so the client, not the server, closes an idle connection). aiohttp rather
than httpx: a scoring call costs about a third of the client CPU of ``httpx.AsyncClient`` (same
server, same body; figures in docs/benchmarks.md, inference-gateway), and httpx logged a line per
request.

Retries only where safe, within the deadline, with a short backoff: a connect error (the request
never left), a connection the server closed before answering (``ServerDisconnectedError``: a
kept-alive connection closed under the request) and a 503 (the server did not process it: no
version loaded yet, or draining). A 401 / 403 (the slot refuses the gateway's own credential) is
an ``Unavailable`` naming the settings on both sides, not a 502. Scoring is a pure function of its
input, so even a repeated request could not change state. A timeout or any other answer is not
retried.
"""

from __future__ import annotations

import abc
import asyncio
import math
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from creditrisk_kit import ServiceError, Unavailable
from opentelemetry import propagate

from inference_gateway.credential import http_refusal
from inference_gateway.values import BOOL, DOUBLE, INT64, STRING, Value

#: What parsing a malformed answer raises (``next`` over no matching V2 output: StopIteration).
_MALFORMED = (KeyError, TypeError, ValueError, IndexError, StopIteration, orjson.JSONDecodeError)


class BadGateway(ServiceError):
    """The model server answered something the gateway cannot use (INTERNAL / HTTP 502)."""

    http_status = 502


@dataclass(frozen=True)
class Score:
    """One scored record and the version that scored it (from the model server's answer)."""

    probability: float
    model_name: str
    version: int
    threshold: float | None


class ModelServerClient(abc.ABC):
    """Scores one record on one slot's model server."""

    protocol: str = ""

    def __init__(
        self,
        base_url: str,
        model_name: str,
        *,
        deadline_s: float,
        retries: int,
        pool_size: int,
        keepalive_s: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
        credential: Callable[[], str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.ssl_context = ssl_context
        self.credential = credential
        self.model_name = model_name
        self.deadline_s = deadline_s
        self.retries = retries
        self.pool_size = pool_size
        self.keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        """The slot's pooled session (made on first use: aiohttp binds it to the running loop)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                base_url=self.base_url,
                connector=aiohttp.TCPConnector(
                    limit=self.pool_size,
                    limit_per_host=self.pool_size,
                    keepalive_timeout=self.keepalive_s,
                    ssl=self.ssl_context if self.ssl_context is not None else True,
                ),
                timeout=aiohttp.ClientTimeout(total=self.deadline_s),
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    @abc.abstractmethod
    def _request(self, record: Mapping[str, Value], kinds: Mapping[str, int]) -> tuple[str, dict[str, Any]]:
        """Path and JSON body of a scoring request."""

    @abc.abstractmethod
    def _parse(self, body: Any) -> Score:
        """The score of a 200 answer (raises ``KeyError`` / ``TypeError`` / ``ValueError`` if malformed)."""

    @abc.abstractmethod
    def _ready_path(self) -> str:
        """Path answering 200 when the slot can score."""

    async def score(self, record: Mapping[str, Value], kinds: Mapping[str, int]) -> Score:
        """Score one record (feature name -> value, None = missing) within the deadline.

        Args:
            record: the model's inputs.
            kinds: declared ValueType of each input (V2 datatypes).

        Raises:
            Unavailable: not reachable, not ready, or no answer within the deadline; a
                :class:`~inference_gateway.credential.CredentialRefused` (503 naming
                ``INFERENCE_GATEWAY_CREDENTIAL_FILE`` and the slot's
                ``MODEL_SERVER_AUTH_API_KEYS_FILE``) when the slot refuses the gateway's own
                credential (HTTP 401 / 403).
            BadGateway: an answer that is not a usable score (logged by the caller).
        """
        path, payload = self._request(record, kinds)
        content = orjson.dumps(payload)
        headers = {"content-type": "application/json"}
        if self.credential is not None and (token := self.credential()):
            # the gateway's own identity; the slot needs the predict role (model_server.access)
            headers["authorization"] = f"Bearer {token}"
        propagate.inject(headers)
        session = self._http()
        deadline = time.monotonic() + self.deadline_s
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable(f"model server {self.base_url} did not answer within the deadline")
            try:
                async with asyncio.timeout(remaining):
                    async with session.post(path, data=content, headers=headers) as response:
                        status = response.status
                        body = await response.read()
            except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
                if attempt <= self.retries:
                    await asyncio.sleep(min(0.05 * 2**attempt, max(deadline - time.monotonic(), 0)))
                    continue
                raise Unavailable(f"model server {self.base_url} is unreachable") from exc
            except TimeoutError as exc:  # asyncio.timeout and aiohttp's timeouts
                raise Unavailable(f"model server {self.base_url} did not answer within the deadline") from exc
            except aiohttp.ClientError as exc:
                raise Unavailable(f"model server {self.base_url} failed: {type(exc).__name__}") from exc
            if status == 503:
                if attempt <= self.retries:
                    await asyncio.sleep(min(0.05 * 2**attempt, max(deadline - time.monotonic(), 0)))
                    continue
                raise Unavailable(f"model server {self.base_url} is not ready")
            if status != 200:
                refused = http_refusal(
                    status,
                    f"model server {self.base_url}",
                    accepts="the slot's MODEL_SERVER_AUTH_API_KEYS_FILE",
                    role="predict",
                )
                raise refused or BadGateway(f"model server answered HTTP {status}")
            try:
                score = self._parse(orjson.loads(body))
            except _MALFORMED as exc:
                raise BadGateway("model server answered a malformed score") from exc
            if not (math.isfinite(score.probability) and 0.0 <= score.probability <= 1.0):
                raise BadGateway("model server answered a probability outside [0, 1]")
            return score

    async def ready(self) -> bool | None:
        """Whether the slot's model server can score now.

        Returns:
            True on 200; False when it answered anything else (not ready: no version, draining) or
            refused the connection (nothing listens); None when it did not answer within
            ``min(deadline, 1 s)`` (perhaps only overloaded: the caller counts consecutive
            unanswered probes, :class:`~inference_gateway.routing.Router`).
        """
        try:
            async with asyncio.timeout(min(self.deadline_s, 1.0)):
                async with self._http().get(self._ready_path()) as response:
                    body = await response.read()
                    return response.status == 200 or self._serving(response.status, body)
        except aiohttp.ClientConnectorError:
            return False
        except (TimeoutError, aiohttp.ClientError):
            return None

    def _serving(self, status: int, body: bytes) -> bool:
        """Whether a not-ready answer still means "can score now" (protocol-specific)."""
        return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _threshold(value: Any) -> float | None:
    if value is None or value == "":
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class SeldonRestClient(ModelServerClient):
    """The Seldon protocol over REST (``jsonData`` records by name)."""

    protocol = "seldon"

    def _request(self, record: Mapping[str, Value], kinds: Mapping[str, int]) -> tuple[str, dict[str, Any]]:
        return "/api/v1.0/predictions", {"jsonData": dict(record)}

    def _parse(self, body: Any) -> Score:
        tags = body["meta"]["tags"]
        data = body.get("jsonData") or {}
        probabilities = data.get("probability_of_default") if isinstance(data, dict) else None
        if probabilities is None:  # a "data" answer: {"data": {"ndarray": [[p]]}} or [p]
            ndarray = body["data"]["ndarray"]
            probabilities = [row[0] if isinstance(row, list) else row for row in ndarray]
        probability = probabilities[0] if isinstance(probabilities, list) else probabilities
        return Score(
            probability=float(probability),
            model_name=str(tags.get("model_name") or self.model_name),
            version=int(tags["model_version"]),
            threshold=_threshold(tags.get("decision_threshold")),
        )

    def _ready_path(self) -> str:
        return "/health/ready"

    def _serving(self, status: int, body: bytes) -> bool:
        if status != 503:
            return False
        try:
            state = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        return isinstance(state, dict) and state.get("serving") is True


_V2_TYPES = {DOUBLE: "FP64", INT64: "INT64", STRING: "BYTES", BOOL: "BOOL"}


class V2RestClient(ModelServerClient):
    """The Open Inference Protocol V2 over REST (one typed input per feature)."""

    protocol = "v2"

    def _request(self, record: Mapping[str, Value], kinds: Mapping[str, int]) -> tuple[str, dict[str, Any]]:
        inputs = []
        for name, value in record.items():
            kind = kinds.get(name, 0)
            datatype = _V2_TYPES.get(kind) or _guess(value)
            data = (
                float(value)
                if kind == DOUBLE and isinstance(value, int) and not isinstance(value, bool)
                else value
            )
            inputs.append({"name": name, "shape": [1], "datatype": datatype, "data": [data]})
        return f"/v2/models/{self.model_name}/infer", {"inputs": inputs}

    def _parse(self, body: Any) -> Score:
        output = next(o for o in body["outputs"] if o["name"] == "probability_of_default")
        data = output["data"]
        while isinstance(data, list):
            data = data[0]
        parameters = body.get("parameters") or {}
        return Score(
            probability=float(data),
            model_name=str(parameters.get("registered_model") or self.model_name),
            version=int(body["model_version"]),
            threshold=_threshold(parameters.get("decision_threshold")),
        )

    def _ready_path(self) -> str:
        return f"/v2/models/{self.model_name}/ready"


def _guess(value: Value) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FP64"
    return "BYTES"


def make_client(
    protocol: str,
    base_url: str,
    model_name: str,
    *,
    deadline_s: float,
    retries: int,
    pool_size: int,
    ssl_context: ssl.SSLContext | None = None,
    credential: Callable[[], str] | None = None,
) -> ModelServerClient:
    """The client of ``protocol`` (``seldon`` or ``v2``); an ``https://`` ``base_url`` is verified
    with ``ssl_context`` (the CAs and client certificate of ``ClientTls``; None: the system's CAs).
    ``credential`` (called at each request; "" or None: none sent) is sent as
    ``authorization: Bearer <credential>`` with every scoring request (the probes are public)."""
    classes: dict[str, type[ModelServerClient]] = {"seldon": SeldonRestClient, "v2": V2RestClient}
    return classes[protocol](
        base_url,
        model_name,
        deadline_s=deadline_s,
        retries=retries,
        pool_size=pool_size,
        ssl_context=ssl_context,
        credential=credential,
    )
