"""A hostile feature-service's GetHistoricalFeatures stream through creditrisk_clients.historical.reassemble.

Expected for every broken stream: a server-side error (Unavailable), never a client error
(InvalidArgument, which the registry-gateway and training-service pass on to *their* caller as
INVALID_ARGUMENT) and never an unexpected exception (INTERNAL). A stream missing a declared feature
column must not be accepted silently.
"""
import asyncio, sys
import pyarrow as pa
from creditrisk.common.v1 import arrow_pb2, values_pb2
from creditrisk.feature.v1 import feature_service_pb2 as fpb
from creditrisk_kit.arrow import encode_chunks
from creditrisk_kit.errors import InvalidArgument, Unavailable
from creditrisk_clients.historical import reassemble


def chunk(table, seq, rows=None, payload=None):
    (enc,) = list(encode_chunks(table))
    return fpb.GetHistoricalFeaturesResponse(chunk=arrow_pb2.ArrowChunk(
        arrow_ipc_stream=enc.payload if payload is None else payload,
        row_count=enc.row_count if rows is None else rows, sequence=seq))


def header(n=2, features=(("age", values_pb2.VALUE_TYPE_INT64),)):
    return fpb.GetHistoricalFeaturesResponse(header=fpb.HistoricalFeaturesHeader(
        features=[values_pb2.FeatureSpec(name=f, value_type=t) for f, t in features],
        entity_columns=["applicant_id"], entity_row_count=n))


def summary(n=2):
    return fpb.GetHistoricalFeaturesResponse(summary=fpb.HistoricalFeaturesSummary(row_count=n, chunk_count=1))


ids = pa.array([1, 2], pa.int64())
CASES = {
    "chunk out of sequence": [header(), chunk(pa.table({"applicant_id": ids, "age": [1, 2]}), 3), summary()],
    "row_count lies": [header(), chunk(pa.table({"applicant_id": ids, "age": [1, 2]}), 0, rows=9), summary()],
    "payload not Arrow": [header(), chunk(pa.table({"applicant_id": ids}), 0, payload=b"garbage"), summary()],
    "INT64 feature sent as text": [header(), chunk(pa.table({"applicant_id": ids, "age": ["x", "y"]}), 0), summary()],
    "INT64 feature sent as list": [header(), chunk(pa.table({"applicant_id": ids, "age": [[1], [2]]}), 0), summary()],
    "DOUBLE feature sent as struct": [header(features=(("amt", values_pb2.VALUE_TYPE_DOUBLE),)),
        chunk(pa.table({"applicant_id": ids, "amt": [{"a": 1}, {"a": 2}]}), 0), summary()],
    "INT64 feature 1.5 (lossy cast)": [header(), chunk(pa.table({"applicant_id": ids, "age": [1.5, 2.0]}), 0), summary()],
    "declared feature missing": [header(), chunk(pa.table({"applicant_id": ids}), 0), summary()],
    "entity column missing": [header(), chunk(pa.table({"age": [1, 2]}), 0), summary()],
}


async def run(stream):
    async def gen():
        for m in stream:
            yield m
    return await reassemble(gen())


async def main() -> int:
    bugs = 0
    for label, stream in CASES.items():
        try:
            result = await run(stream)
            print(f"BUG  {label}: accepted, columns {result.table.column_names}")
            bugs += 1
        except Unavailable as exc:
            print(f"OK   {label}: Unavailable {str(exc)[:110]!r}")
        except InvalidArgument as exc:
            print(f"BUG  {label}: InvalidArgument (caller blamed) {str(exc)[:110]!r}")
            bugs += 1
        except Exception as exc:
            print(f"BUG  {label}: unexpected {type(exc).__name__} (INTERNAL) {str(exc)[:110]!r}")
            bugs += 1
    return 1 if bugs else 0

sys.exit(asyncio.run(main()))
