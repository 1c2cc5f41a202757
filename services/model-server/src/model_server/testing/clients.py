"""TEST FIXTURES ONLY (tests and the benchmark): minimal clients of both runtimes and protocols."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
import httpx
from google.protobuf import json_format
from mlserver.grpc import dataplane_pb2, dataplane_pb2_grpc
from seldon_core.proto import prediction_pb2, prediction_pb2_grpc

V2_TYPES = {"double": "FP64", "long": "INT64", "string": "BYTES"}


class ScoreError(Exception):
    """A non-OK answer: HTTP status or gRPC code, and the body / details."""

    def __init__(self, code: Any, body: str) -> None:
        super().__init__(f"{code}: {body}")
        self.code = code
        self.body = body


def v2_json(records: list[Mapping[str, Any]], kinds: Mapping[str, str]) -> dict[str, Any]:
    """V2 REST request: one typed input per feature present in any record (null = missing)."""
    names = [n for n in kinds if any(n in r for r in records)]
    inputs = []
    for name in names:
        kind = kinds[name]
        data = [r.get(name) for r in records]
        if kind == "double":
            data = [None if v is None else float(v) for v in data]
        inputs.append({"name": name, "shape": [len(records)], "datatype": V2_TYPES[kind], "data": data})
    return {"inputs": inputs}


def v2_proto(model: str, records: list[Mapping[str, Any]], kinds: Mapping[str, str]) -> Any:
    """V2 gRPC ``ModelInferRequest`` (missing doubles as NaN; every record must carry its strings)."""
    req = dataplane_pb2.ModelInferRequest(model_name=model)
    for name in [n for n in kinds if any(n in r for r in records)]:
        kind = kinds[name]
        t = req.inputs.add(name=name, shape=[len(records)], datatype=V2_TYPES[kind])
        values = [r.get(name) for r in records]
        if kind == "double":
            t.contents.fp64_contents.extend([float("nan") if v is None else float(v) for v in values])
        elif kind == "long":
            t.contents.int64_contents.extend(values)
        else:
            t.contents.bytes_contents.extend([v.encode() for v in values])
    return req


class Clients:
    """One client per runtime and protocol (keep-alive HTTP, one gRPC channel each)."""

    def __init__(
        self,
        *,
        model: str,
        kinds: Mapping[str, str],
        seldon_http: str = "",
        seldon_grpc: str = "",
        mlserver_http: str = "",
        mlserver_grpc: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.model, self.kinds = model, dict(kinds)
        self.seldon_http, self.mlserver_http = seldon_http, mlserver_http
        # the caller's credential (``authorization``): REST headers, both gRPC ports' metadata
        self.http = httpx.Client(timeout=30, headers=dict(headers or {}))
        self._metadata = [(k.lower(), v) for k, v in (headers or {}).items() if k.lower() == "authorization"]
        self._seldon = (
            prediction_pb2_grpc.ModelStub(grpc.insecure_channel(seldon_grpc)) if seldon_grpc else None
        )
        self._v2 = (
            dataplane_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(mlserver_grpc))
            if mlserver_grpc
            else None
        )

    def seldon_rest(self, records: list[Mapping[str, Any]]) -> tuple[list[float], str, dict[str, Any]]:
        body = {"jsonData": records[0] if len(records) == 1 else records}
        r = self.http.post(f"{self.seldon_http}/api/v1.0/predictions", json=body)
        if r.status_code != 200:
            raise ScoreError(r.status_code, r.text)
        out = r.json()
        return out["jsonData"]["probability_of_default"], out["meta"]["tags"]["model_version"], out

    def seldon_grpc(self, records: list[Mapping[str, Any]]) -> tuple[list[float], str, dict[str, Any]]:
        assert self._seldon is not None
        msg = json_format.ParseDict(
            {"jsonData": records[0] if len(records) == 1 else records}, prediction_pb2.SeldonMessage()
        )
        try:
            resp = self._seldon.Predict(msg, timeout=30, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise ScoreError(exc.code(), exc.details() or "") from exc
        out = json_format.MessageToDict(resp)
        return out["jsonData"]["probability_of_default"], out["meta"]["tags"]["model_version"], out

    def mlserver_rest(self, records: list[Mapping[str, Any]]) -> tuple[list[float], str, dict[str, Any]]:
        r = self.http.post(
            f"{self.mlserver_http}/v2/models/{self.model}/infer", json=v2_json(records, self.kinds)
        )
        if r.status_code != 200:
            raise ScoreError(r.status_code, r.text)
        out = r.json()
        p = next(o for o in out["outputs"] if o["name"] == "probability_of_default")["data"]
        return p, out["model_version"], out

    def mlserver_grpc(self, records: list[Mapping[str, Any]]) -> tuple[list[float], str, Any]:
        assert self._v2 is not None
        try:
            resp = self._v2.ModelInfer(
                v2_proto(self.model, records, self.kinds), timeout=30, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise ScoreError(exc.code(), exc.details() or "") from exc
        p = next(o for o in resp.outputs if o.name == "probability_of_default")
        return list(p.contents.fp64_contents), resp.model_version, resp
