"""``FeatureStoreCore``: the feature-service's domain API over Feast (thin transports call it).

The core holds what every job shares (the Feast ``FeatureStore``, the settings, the resolved
selections, the online store's guard) and the project's life cycle (apply, readiness, teardown);
each job is a class of its own module, an attribute of the core:

* ``core.catalogue`` (:mod:`feature_service.catalogue`): entities, feature views, feature services;
* ``core.online`` (:mod:`feature_service.online_read`): ``get_online_features`` (blocking and async);
* ``core.historical`` (:mod:`feature_service.historical_read`): point-in-time reads, labelled entities;
* ``core.writes`` (:mod:`feature_service.writes`): materialization and pushes;
* ``core.plans`` (:mod:`feature_service.plans`): selections resolved against the registry (cached).

Every transport (the gRPC servicer, a REST handler, the CLI) converts its messages to their
arguments and the returned :mod:`feature_service.domain` types back; errors are
:mod:`feature_service.errors` exceptions that carry their gRPC / HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from creditrisk_products import Product
from feast import FeatureStore

from feature_service import metrics
from feature_service.catalogue import Catalogue
from feature_service.errors import Unavailable
from feature_service.historical_read import HistoricalReader
from feature_service.offline import offline_writer
from feature_service.online_read import OnlineReader
from feature_service.plans import Plans
from feature_service.product import layout_of, load_repo
from feature_service.repo import FeastRepo, build_repo
from feature_service.schema import ProductLayout
from feature_service.settings import FeatureServiceSettings
from feature_service.sources import repo_config, write_feature_store_yaml
from feature_service.writes import Writer

metrics.keep_values_in_process()  # after `import feast`, which switched prometheus-client to files


class FeatureStoreCore:
    """Domain API of the feature-service over one product's Feast project.

    Args:
        settings: profile, stores (read by the jobs at each call); ``project`` unset means the
            product's Feast project.
        product: the product served; default the only one of ``settings.catalog()``.
        repo: the Feast objects; default :func:`feature_service.repo.build_repo` of the product.

    Attributes:
        product: the product; ``layout``: its views, entity key and request fields
            (:class:`feature_service.schema.ProductLayout`); ``settings``: the settings with the
            project resolved.

    Raises:
        ProductError: the product is missing, invalid, or disagrees with its Feast repository.
        UnknownProduct: several products are configured (one per process for now).
    """

    def __init__(
        self,
        settings: FeatureServiceSettings,
        product: Product | None = None,
        repo: FeastRepo | None = None,
    ) -> None:
        self.product = product or settings.catalog().get()
        parsed = load_repo(self.product)
        self.layout: ProductLayout = layout_of(self.product, parsed)
        self.settings = settings.for_project(self.layout.project)
        self.repo = repo or build_repo(self.settings, self.product, self.layout, parsed=parsed)
        self._store: FeatureStore | None = None
        self._store_lock = threading.Lock()
        # Feast's SQLite online store shares one sqlite3 connection across threads, and concurrent
        # use fails ("bad parameter or other API misuse"): online reads and writes are serialized
        # on the embedded profile. Redis needs no lock (redis-py's pool is thread-safe).
        self.online_guard: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if settings.profile == "embedded" else contextlib.nullcontext()
        )
        self.plans = Plans(self)
        self.catalogue = Catalogue(self)
        self.online = OnlineReader(self)
        self.historical = HistoricalReader(self)
        self.writes = Writer(self)

    # ------------------------------------------------------------------ set-up

    @property
    def store(self) -> FeatureStore:
        """The Feast ``FeatureStore`` (built on first use from a programmatic ``RepoConfig``)."""
        if self._store is None:
            with self._store_lock:
                if self._store is None:
                    self._store = FeatureStore(config=repo_config(self.settings))
        return self._store

    @property
    def built_store(self) -> FeatureStore | None:
        """The Feast ``FeatureStore`` if it is built, else None (never builds it)."""
        return self._store

    def apply(self) -> None:
        """Register the repository's objects and create the online store tables (idempotent)."""
        self.store.apply(self.repo.objects())
        self.store.refresh_registry()
        self.plans.clear()

    def write_feature_store_yaml(self) -> str:
        """Write ``feature_store.yaml`` for ``feast`` CLI users (e.g. ``feast serve``); returns its path."""
        return str(write_feature_store_yaml(self.settings))

    def teardown(self) -> None:
        """Remove this project's online data, registry entries and offline tables (tests, demos).

        Not ``FeatureStore.teardown()``: in Feast 0.67 that deletes *every* project of the registry
        (a shared SQL registry included), not just this one.
        """
        store = self.store
        project = self.settings.feast_project
        try:
            views = store.list_feature_views()
            entities = store.list_entities()
            store._get_provider().teardown_infra(project, views, entities)
        finally:
            # best effort: the project may never have been applied
            with contextlib.suppress(Exception):
                store.registry.delete_project(project, commit=True)
            self._delete_version_history(store, project)
            offline_writer(self.settings).drop_all()

    @staticmethod
    def _delete_version_history(store: FeatureStore, project: str) -> None:
        """Purge what Feast 0.67's SQL registry leaves behind after ``delete_project``.

        ``feature_view_version_history`` rows survive it (re-applying the same project name then
        fails on their primary key), and a project that was only read, never applied, has
        ``feast_metadata`` rows but no ``projects`` row, so ``delete_project`` refuses it.
        """
        engine = getattr(store.registry, "write_engine", None)
        if engine is None:
            return
        from feast.infra.registry import sql as sql_registry
        from sqlalchemy import delete

        with engine.begin() as conn:
            for table in (
                sql_registry.feature_view_version_history,
                sql_registry.feast_metadata,
                sql_registry.projects,
            ):
                conn.execute(delete(table).where(table.c.project_id == project))

    async def ready(self, timeout_s: float = 5.0) -> None:
        """Return when the registry and the online store answer.

        Reads the registry (uncached) and looks up a nonexistent entity in the online store.

        Raises:
            Unavailable: a backend did not answer within ``timeout_s`` or failed.
        """

        def probe() -> None:
            store = self.store
            views = [
                fv
                for fv in store.registry.list_feature_views(self.settings.feast_project, allow_cache=False)
                if fv.online
            ]
            if not views:
                raise Unavailable(
                    f"project '{self.settings.feast_project}' has no online feature views (not applied)"
                )
            ref = f"{views[0].name}:{views[0].features[0].name}"
            # the same guard as every online read and write: the health check ran unguarded every
            # 0.5 s beside the reads and now and then broke one (SQLite: "bad parameter or other
            # API misuse" -> INTERNAL, seen in make demo and an end-to-end run)
            with self.online_guard:
                store.get_online_features(
                    features=[ref],
                    entity_rows=[{self.layout.entity_key: -1 if self.layout.entity_kind == "int" else ""}],
                )

        try:
            await asyncio.wait_for(asyncio.to_thread(probe), timeout_s)
        except Unavailable:
            raise
        except TimeoutError as exc:
            raise Unavailable(f"feature store did not answer within {timeout_s} s") from exc
        except Exception as exc:
            raise Unavailable(f"feature store is not ready: {type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        """Close the non-blocking online read's connections of the running event loop (at shutdown)."""
        await self.online.aclose()
