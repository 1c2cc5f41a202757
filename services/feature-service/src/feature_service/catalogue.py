"""The catalogue: the project's entities, feature views, feature services and their sources."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from feast import FeatureService, FeatureView, OnDemandFeatureView

from feature_service.domain import (
    EntityInfo,
    FeatureServiceInfo,
    FeatureSpec,
    FeatureViewInfo,
    SourceInfo,
    utc,
    value_type,
)

if TYPE_CHECKING:
    from feature_service.core import FeatureStoreCore


class Catalogue:
    """Lists and describes what the project registers (reads the registry's cache).

    Args:
        core: the shared state (the Feast store, the resolved selections).
    """

    def __init__(self, core: FeatureStoreCore) -> None:
        self._core = core

    def entities(self) -> dict[str, EntityInfo]:
        """Every entity of the project, by name."""
        return {
            e.name: EntityInfo(e.name, e.join_key, e.value_type.name, e.description)
            for e in self._core.store.list_entities()
        }

    def list_feature_views(self) -> list[FeatureViewInfo]:
        """Every feature view and on-demand feature view of the project, by name."""
        store = self._core.store
        views: list[FeatureView | OnDemandFeatureView] = [
            *store.list_feature_views(),
            *store.list_on_demand_feature_views(),
        ]
        return sorted((self._view_info(v) for v in views), key=lambda v: v.name)

    def describe_feature_view(self, name: str) -> FeatureViewInfo:
        """One feature view (batch or on-demand).

        Raises:
            NotFound: no such view.
        """
        return self._view_info(self._core.plans.view(name))

    def list_feature_services(self) -> list[FeatureServiceInfo]:
        """Every feature service of the project, by name."""
        return sorted(
            (self.describe_feature_service(fs.name) for fs in self._core.store.list_feature_services()),
            key=lambda s: s.name,
        )

    def describe_feature_service(self, name: str) -> FeatureServiceInfo:
        """One feature service with its typed features.

        Raises:
            NotFound: no such feature service.
        """
        plan = self._core.plans.get(name, None, online=False)
        fs = plan.feast_features
        assert isinstance(fs, FeatureService)
        request_fields: list[FeatureSpec] = []
        for view_name in plan.odfv_sources:
            for source in self._view_info(self._core.plans.view(view_name)).sources:
                request_fields.extend(source.schema)
        return FeatureServiceInfo(
            name=name,
            features=plan.specs,
            feature_views=[p.name for p in fs.feature_view_projections],
            description=fs.description,
            tags=dict(fs.tags),
            request_fields=request_fields,
            **self._meta(fs),
        )

    def _source_info(self, source: Any) -> SourceInfo:
        from feast import FileSource, PushSource, RequestSource

        if isinstance(source, PushSource):
            return SourceInfo(source.name, "push")
        if isinstance(source, RequestSource):
            callers = {v: k for k, v in self._core.layout.request_fields.items()}
            schema = [
                FeatureSpec(callers.get(f.name, f.name), source.name, f.name, value_type(f.dtype))
                for f in source.schema
            ]
            return SourceInfo(source.name, "request", schema=schema)
        kind, location = "postgres", str(getattr(source, "table", "") or getattr(source, "query", ""))
        if isinstance(source, FileSource):
            kind, location = "file", str(source.path)
        return SourceInfo(
            source.name,
            kind,
            location,
            source.timestamp_field,
            source.created_timestamp_column,
        )

    @staticmethod
    def _meta(obj: Any) -> dict[str, Any]:
        created = getattr(obj, "created_timestamp", None)
        updated = getattr(obj, "last_updated_timestamp", None)
        return {
            "owner": getattr(obj, "owner", "") or "",
            "created": utc(created) if created else None,
            "updated": utc(updated) if updated else None,
        }

    def _view_info(self, view: FeatureView | OnDemandFeatureView) -> FeatureViewInfo:
        features = [
            FeatureSpec(f"{view.name}:{f.name}", view.name, f.name, value_type(f.dtype))
            for f in view.features
        ]
        if isinstance(view, OnDemandFeatureView):
            sources = [
                SourceInfo(p.name, "feature_view") for p in view.source_feature_view_projections.values()
            ]
            sources += [self._source_info(rs) for rs in view.source_request_sources.values()]
            return FeatureViewInfo(
                name=view.name,
                kind="on_demand",
                entities=list(view.entities or []),
                features=features,
                ttl=None,
                online=True,
                push_source=None,
                request_fields=[f.name for rs in view.source_request_sources.values() for f in rs.schema],
                description=view.description,
                tags=dict(view.tags),
                sources=sources,
                **self._meta(view),
            )
        spec = self._core.layout.views_by_name.get(view.name)
        ttl = view.ttl if view.ttl and view.ttl.total_seconds() > 0 else None
        return FeatureViewInfo(
            name=view.name,
            kind="batch",
            entities=list(view.entities),
            features=features,
            ttl=ttl,
            online=view.online,
            push_source=spec.push_source_name if spec and spec.push else None,
            request_fields=[],
            description=view.description,
            tags=dict(view.tags),
            sources=[
                *([self._source_info(view.stream_source)] if view.stream_source is not None else []),
                self._source_info(view.batch_source),
            ],
            **self._meta(view),
        )
