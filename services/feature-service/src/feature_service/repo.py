"""The Feast objects of a product, re-pointed at the profile's offline store, ready to apply.

The product's Feast repository (:mod:`feature_service.product`) defines the entity, the feature
views with their push and batch sources, the request sources, the on-demand feature views and
the feature services, as Feast users write them. :func:`build_repo` takes those objects and
re-points each view's batch source at the profile's offline store
(:mod:`feature_service.sources`: Parquet files under the data folder, or PostgreSQL tables),
keeping the source's name, so the definitions are the same in both profiles. Feature view TTLs
come from the repository (``feature_ttl_days`` overrides those of the views that have one).

Feast 0.67 raises ``RequestDataNotFoundInEntityRowsException`` online (and
``RequestDataNotFoundInEntityDfException`` offline) when a request field is absent, so the online
and historical reads (:mod:`feature_service.online_read`, :mod:`feature_service.historical_read`)
always send every request source field, null when the caller gave no value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from creditrisk_products import Product

from feature_service.product import ParsedRepo, load_repo
from feature_service.schema import ProductLayout
from feature_service.settings import FeatureServiceSettings
from feature_service.sources import SourceFactory, source_factory

if TYPE_CHECKING:
    from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView, PushSource, RequestSource

#: Tag holding a feature service's version (checked against ``feature_service_version`` requests and
#: recorded in a model's lineage); bump it whenever the service's feature list changes.
VERSION_TAG = "version"


@dataclass
class FeastRepo:
    """The Feast objects of one project, ready for ``FeatureStore.apply``."""

    entities: list[Entity]
    feature_views: dict[str, FeatureView]
    push_sources: dict[str, PushSource]
    request_sources: dict[str, RequestSource]
    on_demand_feature_views: dict[str, OnDemandFeatureView]
    feature_services: dict[str, FeatureService]

    def objects(self) -> list[Any]:
        """Every object, in an order ``FeatureStore.apply`` accepts."""
        return [
            *self.entities,
            *self.push_sources.values(),
            *self.request_sources.values(),
            *self.feature_views.values(),
            *self.on_demand_feature_views.values(),
            *self.feature_services.values(),
        ]


def build_repo(
    settings: FeatureServiceSettings,
    product: Product,
    layout: ProductLayout,
    factory: SourceFactory | None = None,
    parsed: ParsedRepo | None = None,
) -> FeastRepo:
    """The product's Feast objects, each view's batch source re-pointed at the profile's store.

    Args:
        settings: the service settings (profile, stores, optional TTL override).
        product: the product.
        layout: its layout (:func:`feature_service.product.load_layout`).
        factory: batch source factory; default the one of ``settings.profile``.
        parsed: the parsed repository (default: parsed afresh); its objects are modified.

    Returns:
        The repository's objects.

    Raises:
        ProductError: the repository cannot be loaded.
    """
    from feast import PushSource

    factory = factory or source_factory(settings.for_project(layout.project))
    parsed = parsed or load_repo(product)
    pushes: dict[str, PushSource] = {}
    for name, view in parsed.feature_views.items():
        spec = layout.view(name)
        original = view.batch_source
        batch = factory.batch_source(spec, name=original.name if original is not None else spec.table)
        if isinstance(view.stream_source, PushSource):
            view.stream_source.batch_source = batch
            pushes[view.stream_source.name] = view.stream_source
            view.data_source = view.stream_source
        else:
            view.data_source = batch
        view.batch_source = batch
        if settings.feature_ttl is not None and view.ttl and view.ttl.total_seconds() > 0:
            view.ttl = settings.feature_ttl
    return FeastRepo(
        entities=list(parsed.entities.values()),
        feature_views=dict(parsed.feature_views),
        push_sources=pushes,
        request_sources=dict(parsed.request_sources),
        on_demand_feature_views=dict(parsed.on_demand_feature_views),
        feature_services=dict(parsed.feature_services),
    )
