"""ListModelVersions with a forged offset token >= 200000: MLflow refuses max_results and the
gateway lets the MLflow error escape (INTERNAL) instead of a client error or an empty page.

Runs ModelRegistry.list_versions on a local sqlite MLflow store (no server needed); the exception
type that escapes is what the kit's interceptor turns into INTERNAL.
"""
import asyncio, sys, tempfile
import mlflow
from mlflow import MlflowClient
from registry_gateway.registry import ModelRegistry

tmp = tempfile.mkdtemp()
uri = f"sqlite:///{tmp}/mlflow.db"
client = MlflowClient(tracking_uri=uri, registry_uri=uri)
client.create_registered_model("credit-risk")
reg = ModelRegistry(uri)

async def main() -> int:
    for offset in (0, 199_950, 10**12):
        try:
            page, more = await reg.list_versions("credit-risk", offset, 50)
            print(f"offset {offset}: OK {len(page)} versions, more={more}")
        except Exception as exc:
            from creditrisk_kit.errors import ServiceError
            mapped = isinstance(exc, ServiceError)
            print(f"offset {offset}: {'mapped' if mapped else 'BUG unmapped'} {type(exc).__name__}: {str(exc)[:120]}")
            if not mapped:
                return 1
    return 0

sys.exit(asyncio.run(main()))
