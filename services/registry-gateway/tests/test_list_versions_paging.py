"""ListModelVersions' paging on a local MLflow store (no server): a far offset is an empty page."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient
from registry_gateway.registry import ModelRegistry


async def test_a_far_offset_is_an_empty_page_not_an_mlflow_error(tmp_path: Path) -> None:
    # MLflow refuses max_results over 200,000: an offset token past that was an unmapped
    # MlflowException (INTERNAL) instead of an empty last page.
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("credit-risk")
    for _ in range(3):
        client.create_model_version("credit-risk", source=str(tmp_path))
    registry = ModelRegistry(uri)
    first, more = await registry.list_versions("credit-risk", 0, 2)
    assert [v.version for v in first] == [3, 2]
    assert more
    rest, more = await registry.list_versions("credit-risk", 2, 2)
    assert [v.version for v in rest] == [1]
    assert not more
    for offset in (199_950, 2**63 - 1):
        assert await registry.list_versions("credit-risk", offset, 50) == ([], False)
