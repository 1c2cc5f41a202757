"""The promotion gate over the registry (EvaluatePromotion, and the first step of
PromoteModelVersion): the challenger's gate window, its labelled rows through the feature-service,
both versions scored here (their files checked against the digest tags), then
:func:`registry_gateway.gate.evaluate` (the pure rule).

The window is ``(end - days, end]``: ``days`` is the challenger run's param ``gate_window_days``
(else the product's ``[gate].window_days``), ``end`` its run tag ``gate_window.end``; a run without
the tag is anchored at the latest labelled application.

The rows come from the product's label view (``[label].view``); the label is its
``[label].column`` (1 = the positive class) and rows of two feature services are matched on the
product's entity key (``[entity].join_key``) and the application time. A label view without that
column (or key) is FAILED_PRECONDITION ``LABEL_COLUMN`` naming both, never INTERNAL.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from creditrisk_kit import FailedPrecondition, InvalidArgument, PreconditionViolation
from creditrisk_kit.auth import Role
from creditrisk_model_artifacts import MODEL_DIR, DigestMismatch, digests_from_tags, sha256_tree
from creditrisk_products import Product
from opentelemetry import trace

from registry_gateway import gate as gt
from registry_gateway.auth import Caller
from registry_gateway.domain import GateDecision
from registry_gateway.features import EVENT_TIMESTAMP, FeatureServiceClient
from registry_gateway.models import SklearnModel, read_mlmodel, to_model_input
from registry_gateway.registry import CHAMPION, TAG, ModelRegistry, check_alias, check_name

_TRACER = trace.get_tracer("registry_gateway")


class GateEvaluator:
    """Runs the gate for a version and an alias, changing nothing.

    Args:
        registry: the MLflow registry.
        features: the feature-service client (the window's labelled rows).
        config: the gate's rule.
        product: the product: the window's label view and column, the entity key, the window
            of a run that records none.
        cache_dir: where model artifacts are downloaded for scoring.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        features: FeatureServiceClient,
        config: gt.GateConfig,
        *,
        product: Product,
        cache_dir: Path,
    ) -> None:
        self.registry = registry
        self.features = features
        self.config = config
        self.product = product
        self.label_view = product.label.view
        self.label = product.label.column
        self.entity_key = product.entity.join_key
        self.default_gate_window_days = product.gate.window_days
        self.cache_dir = cache_dir
        self._models: dict[tuple[str, int], tuple[SklearnModel, list[Any]]] = {}
        self._model_lock = threading.Lock()

    def _loaded(self, mv: Any) -> tuple[SklearnModel, list[Any]]:
        """The scikit-learn flavor of a version, its files checked against the digest tags."""
        key = (mv.name, int(mv.version))
        with self._model_lock:
            if key in self._models:
                return self._models[key]
        work = Path(tempfile.mkdtemp(prefix="gate-", dir=self.cache_dir))
        try:
            import mlflow.artifacts

            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=self.registry.artifact_location(mv.source),
                    dst_path=str(work),
                    tracking_uri=self.registry.tracking_uri,
                )
            )
            prefix = f"{MODEL_DIR}/"
            expected = {k: v for k, v in digests_from_tags(mv.tags or {}).items() if k.startswith(prefix)}
            try:
                actual = sha256_tree(local, MODEL_DIR)
            except DigestMismatch as exc:
                raise FailedPrecondition(f"artifacts of {mv.name}/{mv.version}: {exc.reason}") from exc
            if expected and actual != expected:
                changed = sorted(k for k in set(expected) | set(actual) if expected.get(k) != actual.get(k))
                raise FailedPrecondition(
                    f"artifacts of {mv.name}/{mv.version} differ from their recorded sha256 digests: "
                    f"{changed}",
                    [
                        PreconditionViolation(
                            "DIGEST_MISMATCH", f"{mv.name}/{mv.version}", "re-register the run"
                        )
                    ],
                )
            meta = read_mlmodel(local)
            loaded = (SklearnModel(local, meta), meta.signature or [])
        finally:
            shutil.rmtree(work, ignore_errors=True)
        with self._model_lock:
            self._models[key] = loaded
        return loaded

    async def _window(
        self, challenger: Any
    ) -> tuple[datetime, datetime, dict[tuple[str, str], pd.DataFrame]]:
        """The gate window of the challenger's run and its labelled rows per feature service."""
        run = await self.registry.run(self.registry.client.get_run, challenger.run_id)
        days = int(run.data.params.get("gate_window_days") or self.default_gate_window_days)
        tags = dict(challenger.tags or {})
        fs = (tags.get(f"{TAG}feature_service.name", ""), tags.get(f"{TAG}feature_service.version", ""))
        anchor = run.data.tags.get("gate_window.end")
        if anchor:
            end = pd.Timestamp(anchor).tz_convert("UTC").to_pydatetime()
            start = end - timedelta(days=days)
            fetch_start, fetch_end = start, end + timedelta(microseconds=1)
            rows = await self._rows(fs, fetch_start, fetch_end)
        else:  # a model logged by hand: the latest labelled application anchors the window
            fetch_start, fetch_end = datetime(1970, 1, 1, tzinfo=UTC), datetime.now(UTC)
            rows = await self._rows(fs, fetch_start, fetch_end)
            if rows.empty:
                raise self._too_few(0)
            end = rows[EVENT_TIMESTAMP].max().to_pydatetime()
            start = end - timedelta(days=days)
        rows = rows[
            (rows[EVENT_TIMESTAMP] > pd.Timestamp(start)) & (rows[EVENT_TIMESTAMP] <= pd.Timestamp(end))
        ]
        return start, end + timedelta(microseconds=1), {fs: rows.reset_index(drop=True)}

    async def _rows(self, fs: tuple[str, str], start: datetime, end: datetime) -> pd.DataFrame:
        rows = await self.features.labelled_rows(
            feature_service=fs[0], version=fs[1], label_view=self.label_view, start=start, end=end
        )
        missing = [c for c in (self.label, self.entity_key) if c not in rows.columns]
        if missing:
            raise FailedPrecondition(
                f"the gate window's rows from label view {self.label_view!r} have no column "
                f"{', '.join(map(repr, missing))} (product {self.product.name!r}: [label].column "
                f"{self.label!r}, [entity].join_key {self.entity_key!r})",
                [
                    PreconditionViolation(
                        "LABEL_COLUMN",
                        f"{self.label_view}.{missing[0]}",
                        "the product's label view must hold its label column and entity key",
                    )
                ],
            )
        return rows[rows[self.label].notna()]

    def _too_few(self, rows: int) -> FailedPrecondition:
        return FailedPrecondition(
            f"the gate window has {rows} labelled rows with both classes; the gate needs at least "
            f"{self.config.min_rows}",
            [PreconditionViolation("GATE_WINDOW_TOO_SMALL", "gate window", "wait for more labels")],
        )

    async def decide(self, name: str, version: int, alias: str) -> tuple[GateDecision, int | None]:
        """The gate's decision on ``name/version`` for ``alias`` and the alias holder it compared."""
        with _TRACER.start_as_current_span("registry.gate") as span:
            span.set_attribute("registry.model", name)
            span.set_attribute("registry.version", version)
            challenger = await self.registry.run(self.registry.ready_version, name, version)
            holder = await self.registry.run(self.registry.alias_holder, name, alias)
            if holder == version:
                raise FailedPrecondition(
                    f"{name}/{version} already holds {alias!r}",
                    [PreconditionViolation("ALREADY_HOLDS_ALIAS", f"{name}@{alias}", "nothing to promote")],
                )
            champion = (
                await self.registry.run(self.registry.model_version, name, holder)
                if holder is not None
                else None
            )
            start, end, frames = await self._window(challenger)
            rows = next(iter(frames.values()))
            if champion is not None:
                c_fs = (
                    champion.tags.get(f"{TAG}feature_service.name", ""),
                    champion.tags.get(f"{TAG}feature_service.version", ""),
                )
                if c_fs not in frames:
                    other = await self._rows(c_fs, start, end)
                    keys = [self.entity_key, EVENT_TIMESTAMP]
                    rows = rows.merge(other[keys], on=keys)
                    frames[c_fs] = other.merge(rows[keys], on=keys)
            y = rows[self.label].astype(np.int64).to_numpy() if len(rows) else np.array([], dtype=np.int64)
            if len(y) < self.config.min_rows or len(np.unique(y)) < 2:
                raise self._too_few(len(y))

            def score(mv: Any, frame: pd.DataFrame) -> np.ndarray:
                model, signature = self._loaded(mv)
                return model.predict_default(to_model_input(frame, signature))

            p_ch = await self.registry.run(score, challenger, rows)
            c_threshold = float(challenger.tags[f"{TAG}decision_threshold"])
            champ = None
            if champion is not None:
                frame = frames.get(c_fs, rows)
                p_h = await self.registry.run(score, champion, frame)
                champ = (int(champion.version), p_h, float(champion.tags[f"{TAG}decision_threshold"]))
            outcome = gt.evaluate(self.config, y, (version, p_ch, c_threshold), champ)
            span.set_attribute("registry.gate.passed", outcome.passed)
            decision = GateDecision(
                model_name=name,
                alias=alias,
                outcome=outcome,
                config=self.config,
                window_start=start,
                window_end=end,
                evaluate_time=datetime.now(UTC),
            )
            return decision, holder

    async def evaluate(self, caller: Caller, name: str, version: int, alias: str) -> GateDecision:
        """EvaluatePromotion: the gate, changing nothing (``alias`` empty: champion)."""
        caller.require(Role.READ_REGISTRY, "EvaluatePromotion")
        name = check_name(name, "name")
        if version < 1:
            raise InvalidArgument("version", "required, >= 1")
        alias = check_alias(alias or CHAMPION, "alias")
        decision, _ = await self.decide(name, version, alias)
        return decision
