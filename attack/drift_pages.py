"""Hostile page tokens against the drift-service's List RPCs (in-process ServiceRunner, SQLite)."""
import asyncio, base64, json, sys, tempfile
from pathlib import Path
import grpc
from creditrisk.drift.v1 import drift_service_pb2 as pb, drift_service_pb2_grpc as pb_grpc
from creditrisk_kit import ServiceRunner, aio_channel
from drift_service.core import DriftCore
from drift_service.servicer import SERVICE_NAME, DriftServiceServicer
from drift_service.settings import DriftServiceSettings


def raw(payload: object) -> str:
    s = json.dumps({"p": payload} if not isinstance(payload, dict) else payload, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(s).decode().rstrip("=")


async def main() -> int:
    tmp = Path(tempfile.mkdtemp())
    settings = DriftServiceSettings(data_dir=tmp / "data", metrics_port=None, report_http_port=0,
                                    warm_up=False, host="127.0.0.1", port=0, grace_period_s=1.0)
    core = DriftCore(settings, report_base_url="http://reports.test")
    runner = ServiceRunner(settings, service_names=[SERVICE_NAME],
        register=lambda s: pb_grpc.add_DriftServiceServicer_to_server(DriftServiceServicer(core), s),
        readiness_checks={"event store": core.ready}, instrument=False, reflection=False)
    await runner.start()
    ch = aio_channel(f"127.0.0.1:{runner.port}", default_timeout_s=30, instrument=False, retry=None)
    stub = pb_grpc.DriftServiceStub(ch)
    bad = 0
    cases = {
        "2**63 (int64 overflow)": raw(2**63),
        "2**64": raw(2**64),
        "10**300": raw(10**300),
        "2**63-1": raw(2**63 - 1),
        "2**62": raw(2**62),
    }
    for label, tok in cases.items():
        for rpc, req in (("ListDriftReports", pb.ListDriftReportsRequest(page_token=tok)),
                         ("ListTriggerEvents", pb.ListTriggerEventsRequest(page_token=tok))):
            try:
                r = await getattr(stub, rpc)(req)
                print(f"OK   {rpc:18} {label}: {len(r.ListFields())} fields")
            except grpc.aio.AioRpcError as e:
                client_err = e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE)
                bad += not client_err
                print(f"{'OK ' if client_err else 'BUG'}  {rpc:18} {label}: {e.code().name} {e.details()[:150]!r}")
    await ch.close(); await runner.stop(); core.close()
    return 1 if bad else 0

sys.exit(asyncio.run(main()))
