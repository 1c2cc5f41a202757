"""The MLflow model registry as the other jobs see it: name checks, lookups with the gateway's
NOT_FOUND errors, the worker-thread runner that maps MLflow outages to UNAVAILABLE, and the reads
(ListRegisteredModels, ListModelVersions, GetModelVersion). Reads go to MLflow each time (no
cache), so a moved alias is seen by the next read. A version's lineage digest is the one the
gateway kept at registration when it kept one (the training rows' sha256, from its own store),
never a tag read back from MLflow.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from creditrisk_kit import FailedPrecondition, InvalidArgument, PreconditionViolation, Unavailable
from creditrisk_model_artifacts import digests_from_tags
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException

from registry_gateway.domain import (
    Lineage,
    ModelVersionInfo,
    RegisteredModelInfo,
    SignatureInput,
    VersionSelector,
)
from registry_gateway.errors import alias_not_found, model_not_found, version_not_found

T = TypeVar("T")

CHAMPION = "champion"
TAG = "registry."
RESERVED_TAG_PREFIX = TAG
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$")
_ALIAS = re.compile(r"^[a-z0-9_-]{1,64}$")
_MLFLOW_RESERVED_ALIAS = re.compile(r"^(latest|v\d+)$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def check_name(value: str, field: str) -> str:
    """A registered model name (INVALID_ARGUMENT naming ``field`` otherwise)."""
    if not value:
        raise InvalidArgument(field, "required")
    if not _NAME.match(value):
        raise InvalidArgument(
            field, "letters, digits, '.', '_' and '-' only, starting with a letter or digit"
        )
    return value


def check_alias(value: str, field: str) -> str:
    """An alias the gateway may set (INVALID_ARGUMENT naming ``field`` otherwise)."""
    if not value:
        raise InvalidArgument(field, "required")
    if not _ALIAS.match(value) or _MLFLOW_RESERVED_ALIAS.match(value):
        raise InvalidArgument(field, "lowercase letters, digits, '-' and '_' (not 'latest' nor 'v<digits>')")
    return value


def is_not_found(exc: MlflowException) -> bool:
    """MLflow's "does not exist"; also its basic-auth app's 403 (``PERMISSION_DENIED``), which it
    answers for a run or model that does not exist rather than revealing it (the gateway's MLflow
    user reads every experiment and manages every registered model, so a 403 means absent or a
    misconfigured user; docs/security.md, "MLflow")."""
    return exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "PERMISSION_DENIED")


def _time(millis: int | None) -> datetime | None:
    """An MLflow timestamp (milliseconds since the epoch) as an aware datetime."""
    return None if millis is None else _EPOCH + timedelta(milliseconds=int(millis))


class ModelRegistry:
    """Lookups and reads over one MLflow tracking server (also the registry).

    Args:
        tracking_uri: the MLflow tracking server.
        kept_rows_sha256: ``(model name, version) -> sha256 hex or None``: the training rows' sha256
            the gateway kept at registration (``AuditStore.training_rows_sha256``); None: none kept.
    """

    def __init__(
        self, tracking_uri: str, kept_rows_sha256: Callable[[str, int], str | None] | None = None
    ) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.kept_rows_sha256 = kept_rows_sha256 or (lambda _name, _version: None)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread; MLflow outages become UNAVAILABLE."""
        try:
            return await asyncio.to_thread(fn, *args)
        except RestException as exc:
            if exc.get_http_status_code() >= 500:
                raise Unavailable("MLflow tracking server failed") from exc
            raise
        except MlflowException as exc:
            if "Max retries exceeded" in str(exc) or "Connection" in str(exc):
                raise Unavailable("MLflow tracking server unavailable") from exc
            raise

    async def healthy(self) -> bool:
        """Readiness: MLflow answers ``GET /health`` (an https server's certificate checked as
        MLflow's client checks it: ``MLFLOW_TRACKING_SERVER_CERT_PATH``, else the system's CAs).

        Raises:
            requests.RequestException: the server cannot be reached or its certificate does not
                verify (the kit reports the reason).
        """
        import requests
        from mlflow.environment_variables import (
            MLFLOW_TRACKING_INSECURE_TLS,
            MLFLOW_TRACKING_SERVER_CERT_PATH,
        )

        verify = MLFLOW_TRACKING_SERVER_CERT_PATH.get() or not MLFLOW_TRACKING_INSECURE_TLS.get()

        def check() -> bool:
            response = requests.get(f"{self.tracking_uri}/health", timeout=2, verify=verify)
            return bool(response.status_code == 200)

        return await asyncio.to_thread(check)

    def registered_model(self, name: str) -> Any:
        """The registered model (MODEL_NOT_FOUND)."""
        try:
            return self.client.get_registered_model(name)
        except MlflowException as exc:
            if is_not_found(exc):
                raise model_not_found(name) from exc
            raise

    def model_version(self, name: str, version: int) -> Any:
        """The model version (MODEL_NOT_FOUND / VERSION_NOT_FOUND)."""
        self.registered_model(name)
        try:
            return self.client.get_model_version(name, str(version))
        except MlflowException as exc:
            if is_not_found(exc):
                raise version_not_found(name, version) from exc
            raise

    def ready_version(self, name: str, version: int) -> Any:
        """The model version, which must be READY."""
        mv = self.model_version(name, version)
        if str(mv.status) != "READY":
            raise FailedPrecondition(
                f"model version {name}/{version} is {mv.status}, not READY",
                [PreconditionViolation("VERSION_NOT_READY", f"{name}/{version}", "wait for READY")],
            )
        return mv

    def alias_holder(self, name: str, alias: str) -> int | None:
        """The version ``alias`` points to, None when unset."""
        aliases = dict(self.registered_model(name).aliases or {})
        return int(aliases[alias]) if alias in aliases else None

    def artifact_location(self, source: str) -> str:
        """Where a version's source lives (``models:/<model id>`` resolved to the logged model's
        artifact location on this tracking server)."""
        if source.startswith("models:/m-"):
            return str(self.client.get_logged_model(source.removeprefix("models:/")).artifact_location)
        return source

    def download(self, uri: str, dst: Path) -> Path:
        """Download an artifact URI into ``dst``; the local path."""
        import mlflow.artifacts

        dst.mkdir(parents=True, exist_ok=True)
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=str(dst), tracking_uri=self.tracking_uri
            )
        )

    def version_info(self, mv: Any, run: Any | None = None) -> ModelVersionInfo:
        """An MLflow model version with its run's finite metrics and its ``registry.*`` tags read.

        The lineage's dataset digest is ``sha256:<64 hex>`` of the training rows when the gateway
        kept their sha256 at registration (its store, not MLflow); else, as for a version registered
        before it did or from a run without training rows, MLflow's dataset digest (the
        ``registry.dataset.digest`` tag, not a file hash)."""
        tags = dict(mv.tags or {})
        rows_sha256 = self.kept_rows_sha256(mv.name, int(mv.version))
        if run is None and mv.run_id:
            try:
                run = self.client.get_run(mv.run_id)
            except MlflowException:
                run = None
        metrics = (
            {k: float(v) for k, v in run.data.metrics.items() if np.isfinite(v)} if run is not None else {}
        )
        return ModelVersionInfo(
            name=mv.name,
            version=int(mv.version),
            aliases=sorted(mv.aliases or []),
            run_id=mv.run_id or "",
            source=mv.source or "",
            status=str(mv.status),
            create_time=_time(mv.creation_timestamp),
            update_time=_time(mv.last_updated_timestamp),
            description=mv.description or "",
            tags=tags,
            artifact_digests=digests_from_tags(tags),
            registered_by=tags.get(f"{TAG}registered_by", ""),
            metrics=metrics,
            lineage=Lineage(
                run_id=mv.run_id or "",
                experiment_id=tags.get(f"{TAG}experiment_id", ""),
                dataset_source=tags.get(f"{TAG}dataset.source", ""),
                dataset_digest=(
                    f"sha256:{rows_sha256}" if rows_sha256 else tags.get(f"{TAG}dataset.digest", "")
                ),
                feature_service_name=tags.get(f"{TAG}feature_service.name", ""),
                feature_service_version=tags.get(f"{TAG}feature_service.version", ""),
                code_version=tags.get(f"{TAG}code_version", ""),
            ),
            signature=[
                SignatureInput(name=col["name"], type=col["type"], required=col["required"])
                for col in json.loads(tags.get(f"{TAG}signature", "[]"))
            ],
            decision_threshold=(
                float(tags[f"{TAG}decision_threshold"]) if f"{TAG}decision_threshold" in tags else None
            ),
        )

    # --- reads --------------------------------------------------------------------------------

    async def list_models(self, offset: int, limit: int) -> tuple[list[RegisteredModelInfo], bool]:
        """ListRegisteredModels: by name."""

        def read() -> tuple[list[RegisteredModelInfo], bool]:
            found: list[Any] = []
            token = None
            while len(found) < offset + limit + 1:
                page = self.client.search_registered_models(
                    max_results=1000, order_by=["name ASC"], page_token=token
                )
                found.extend(page)
                token = page.token
                if not token:
                    break
            out = []
            for rm in found[offset : offset + limit]:
                latest = self.client.search_model_versions(
                    f"name = '{rm.name}'", max_results=1, order_by=["version_number DESC"]
                )
                out.append(
                    RegisteredModelInfo(
                        name=rm.name,
                        description=rm.description or "",
                        tags=dict(rm.tags or {}),
                        aliases={k: int(v) for k, v in (rm.aliases or {}).items()},
                        latest_version=int(latest[0].version) if latest else 0,
                        create_time=_time(rm.creation_timestamp),
                        update_time=_time(rm.last_updated_timestamp),
                    )
                )
            return out, len(found) > offset + limit

        return await self.run(read)

    async def list_versions(self, name: str, offset: int, limit: int) -> tuple[list[ModelVersionInfo], bool]:
        """ListModelVersions: newest first."""
        check_name(name, "name")

        def read() -> tuple[list[ModelVersionInfo], bool]:
            aliases: dict[int, list[str]] = {}
            for alias, version in (self.registered_model(name).aliases or {}).items():
                aliases.setdefault(int(version), []).append(alias)
            # MLflow refuses max_results over 200,000 (an INVALID_PARAMETER_VALUE that would escape
            # as INTERNAL for a far offset token): page through it instead, as list_models does.
            found: list[Any] = []
            token = None
            while len(found) < offset + limit + 1:
                batch = self.client.search_model_versions(
                    f"name = '{name}'",
                    max_results=min(offset + limit + 1, 1000),
                    order_by=["version_number DESC"],
                    page_token=token,
                )
                found.extend(batch)
                token = batch.token
                if not token:
                    break
            page = [self.version_info(mv) for mv in found[offset : offset + limit]]
            # search results carry no aliases: take them from the model
            page = [dataclasses.replace(v, aliases=sorted(aliases.get(v.version, []))) for v in page]
            return page, len(found) > offset + limit

        return await self.run(read)

    async def get_version(self, ref: VersionSelector) -> ModelVersionInfo:
        """GetModelVersion by number or alias (MODEL / VERSION / ALIAS_NOT_FOUND)."""
        name = check_name(ref.name, "model.name")
        which = ref.which
        if which is None:
            raise InvalidArgument("model.version_selector", "set version or alias")
        if which == "version" and ref.version < 1:
            raise InvalidArgument("model.version", "must be >= 1")

        def read() -> ModelVersionInfo:
            if which == "alias":
                holder = self.alias_holder(name, ref.alias)
                if holder is None:
                    raise alias_not_found(name, ref.alias)
                return self.version_info(self.model_version(name, holder))
            return self.version_info(self.model_version(name, ref.version))

        return await self.run(read)
