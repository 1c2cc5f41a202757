"""The registry-gateway's core: the jobs over the MLflow model registry, built and closed together.

* :class:`~registry_gateway.registry.ModelRegistry` (``registry.py``): lookups, name checks and the
  reads (ListRegisteredModels, ListModelVersions, GetModelVersion);
* :class:`~registry_gateway.registration.Registration` (``registration.py``): RegisterModelVersion
  and its checks;
* :class:`~registry_gateway.evaluation.GateEvaluator` (``evaluation.py``): the promotion gate's
  window, rows and scores (the rule itself: ``gate.py``);
* :class:`~registry_gateway.aliases.Aliases` (``aliases.py``): alias moves, promotion, rollback and
  the alias change stream;
* :class:`~registry_gateway.audit.AuditTrail` (``audit.py``): the audit records and their listing.

Each takes and returns domain types (:mod:`registry_gateway.domain`); the servicer converts
(:mod:`registry_gateway.convert`).

The gateway is the only writer of the registry. Every write runs inside the audit store's write
lock (process lock + database lock, :meth:`registry_gateway.audit.AuditStore.locked`), which also
appends its audit record in the same transaction: 50 parallel registrations get 50 distinct
version numbers, and an alias never moves twice at once. Reads go to MLflow each time (no cache),
so a moved alias is seen by the next read.

Blocking work (MLflow REST calls, model loading, scoring, the database) runs in worker threads;
the feature-service calls are asynchronous.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from creditrisk_model_artifacts.signing import SigningKey
from creditrisk_products import Product

from registry_gateway import audit as au
from registry_gateway import gate as gt
from registry_gateway.aliases import Aliases
from registry_gateway.evaluation import GateEvaluator
from registry_gateway.features import FeatureServiceClient
from registry_gateway.registration import Registration
from registry_gateway.registry import ModelRegistry


class RegistryCore:
    """The jobs the RPCs call (see the module docstring), their readiness and their shutdown.

    Args:
        tracking_uri: the MLflow tracking server.
        store: the audit store (migrated).
        features: the feature-service client.
        gate: the gate's rule.
        product: the product whose models are registered: the gate window's label view and
            column, its entity key and the default window (``[gate].window_days``).
        cache_dir: where model artifacts are downloaded (a temporary folder when empty).
        watch_poll_interval_s: how often watchers look for other gateway processes' changes.
        signing_key: signs every alias move (:mod:`creditrisk_model_artifacts.signing`); None: unsigned.
    """

    def __init__(
        self,
        *,
        tracking_uri: str,
        store: au.AuditStore,
        features: FeatureServiceClient,
        gate: gt.GateConfig,
        product: Product,
        cache_dir: str = "",
        watch_poll_interval_s: float = 1.0,
        signing_key: SigningKey | None = None,
    ) -> None:
        self.store = store
        self.features = features
        self._own_cache = not cache_dir
        self.cache_dir = Path(cache_dir or tempfile.mkdtemp(prefix="registry-gateway-"))
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.registry = ModelRegistry(tracking_uri, store.training_rows_sha256)
        self.trail = au.AuditTrail(store)
        self.registration = Registration(self.registry, self.trail, features, self.cache_dir)
        self.gate = GateEvaluator(
            self.registry,
            features,
            gate,
            product=product,
            cache_dir=self.cache_dir,
        )
        self.aliases = Aliases(self.registry, self.trail, self.gate, watch_poll_interval_s, signing_key)

    async def mlflow_healthy(self) -> bool:
        """Readiness: MLflow answers ``GET /health``."""
        return await self.registry.healthy()

    async def audit_healthy(self) -> bool:
        """Readiness: the audit database answers."""
        return await self.trail.healthy()

    async def close(self) -> None:
        """End watchers, release the downloads and the feature-service channel."""
        self.aliases.close()
        await self.features.close()
        if self._own_cache:
            shutil.rmtree(self.cache_dir, ignore_errors=True)

    def artifact_location(self, source: str) -> str:
        """Where a version's source lives (see :meth:`ModelRegistry.artifact_location`)."""
        return self.registry.artifact_location(source)
