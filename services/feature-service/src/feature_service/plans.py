"""Feature selections resolved against the registry: :class:`Plan`, cached per registry refresh.

A selection is a feature service or a list of ``view:feature`` references. Online reads, historical
reads and the catalogue resolve it through :class:`Plans`, which keeps each resolved selection for
the registry cache TTL (a read of a resolved selection does not touch the registry).

Python-mode on-demand outputs vanish from Feast 0.67's response when ``full_feature_names=True``:
Feast is called with short names, which must therefore be unique within one selection, and the
feature-service names features ``view:feature`` itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from feast import FeatureService, FeatureView, OnDemandFeatureView
from feast.errors import (
    FeatureServiceNotFoundException,
    FeatureViewNotFoundException,
    OnDemandFeatureViewNotFoundException,
)

from feature_service import online
from feature_service.domain import FeatureSpec, value_type
from feature_service.errors import FailedPrecondition, InvalidArgument, NotFound
from feature_service.repo import VERSION_TAG

if TYPE_CHECKING:
    from feature_service.core import FeatureStoreCore


@dataclass
class Plan:
    """A resolved feature selection (cached per registry refresh)."""

    feast_features: FeatureService | list[str]
    specs: list[FeatureSpec]
    online_views: set[str]
    offline_only_views: list[str]
    needs_request_data: bool
    odfv_sources: dict[str, list[str]] = field(default_factory=dict)  # odfv -> source view names
    version: str = ""  # the feature service's version tag; "" for explicit references
    # the online read (feature_service.online): stored views with the features to read (requested
    # ones and on-demand inputs), and the on-demand views with their source feature names
    reads: list[online.ViewRead] = field(default_factory=list)
    odfvs: list[tuple[OnDemandFeatureView, list[tuple[str, str]]]] = field(default_factory=list)


class Plans:
    """Resolves selections and caches them for the registry cache TTL (at least 1 s).

    Args:
        core: the shared state (the Feast store, the settings).
    """

    def __init__(self, core: FeatureStoreCore) -> None:
        self._core = core
        self._plans: dict[tuple[str | None, tuple[str, ...] | None, bool], Plan] = {}
        self._plans_at = 0.0

    def clear(self) -> None:
        """Forget every resolved selection (after the registry changed)."""
        self._plans.clear()

    def get(
        self,
        feature_service: str | None,
        features: Sequence[str] | None,
        online: bool,
        expected_version: str | None = None,
    ) -> Plan:
        """The resolved selection (cached), checked as :meth:`checked` does.

        Raises:
            NotFound / InvalidArgument / FailedPrecondition: an unknown or malformed selection, an
                offline-only view read online, an unexpected feature service version.
        """
        if (feature_service is None) == (not features):
            raise InvalidArgument(
                "features", "give exactly one of a feature service or a list of feature references"
            )
        if not self._plans_fresh():
            self._plans.clear()
            self._plans_at = time.monotonic()
        key = (feature_service, tuple(features) if features else None, online)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._resolve(feature_service, list(features or []))
            self._plans[key] = plan
        return self.checked(plan, feature_service, online, expected_version)

    @staticmethod
    def checked(plan: Plan, feature_service: str | None, online: bool, expected_version: str | None) -> Plan:
        """``plan`` when the request may use it (version, online views), else FailedPrecondition."""
        if feature_service is not None and expected_version and expected_version != plan.version:
            raise FailedPrecondition(
                f"feature service '{feature_service}' is at version '{plan.version}', "
                f"the request expects version '{expected_version}'"
            )
        if online and plan.offline_only_views:
            raise FailedPrecondition(
                f"feature view(s) {plan.offline_only_views} are offline-only, not served online"
            )
        return plan

    def cached(
        self, feature_service: str | None, features: Sequence[str] | None, online: bool
    ) -> Plan | None:
        """The resolved selection when it is cached and fresh (no registry read), else None."""
        if not self._plans_fresh():
            return None
        return self._plans.get((feature_service, tuple(features) if features else None, online))

    def _plans_fresh(self) -> bool:
        """Whether the cached selections are younger than the registry cache TTL (at least 1 s)."""
        return time.monotonic() - self._plans_at <= max(self._core.settings.registry_cache_ttl_seconds, 1)

    def view(self, name: str) -> FeatureView | OnDemandFeatureView:
        """A feature view or on-demand feature view by name (the registry's cache).

        Raises:
            NotFound: no such view.
        """
        registry, project = self._core.store.registry, self._core.settings.feast_project
        try:
            return registry.get_feature_view(name, project, allow_cache=True)
        except FeatureViewNotFoundException:
            pass
        try:
            return registry.get_on_demand_feature_view(name, project, allow_cache=True)
        except (OnDemandFeatureViewNotFoundException, FeatureViewNotFoundException):
            raise NotFound("feature view", name) from None

    def _resolve(self, feature_service: str | None, features: list[str]) -> Plan:
        registry, project = self._core.store.registry, self._core.settings.feast_project
        feast_features: FeatureService | list[str]
        selection: list[tuple[FeatureView | OnDemandFeatureView, list[str]]] = []
        fs: FeatureService | None = None
        if feature_service is not None:
            try:
                fs = registry.get_feature_service(feature_service, project, allow_cache=True)
            except FeatureServiceNotFoundException:
                raise NotFound("feature service", feature_service) from None
            feast_features = fs
            for projection in fs.feature_view_projections:
                selection.append((self.view(projection.name), [f.name for f in projection.features]))
        else:
            feast_features = []
            by_view: dict[str, list[str]] = {}
            for ref in features:
                if (
                    not isinstance(ref, str)
                    or ref.count(":") != 1
                    or ref.startswith(":")
                    or ref.endswith(":")
                ):
                    raise InvalidArgument("features", f"'{ref}' is not a feature reference 'view:feature'")
                view_name, feature = ref.split(":")
                by_view.setdefault(view_name, [])
                if feature not in by_view[view_name]:
                    by_view[view_name].append(feature)
                    feast_features.append(ref)
            for view_name, names in by_view.items():
                view = self.view(view_name)
                known = {f.name for f in view.features}
                for name in names:
                    if name not in known:
                        raise NotFound("feature", f"{view_name}:{name}")
                selection.append((view, names))

        specs: list[FeatureSpec] = []
        offline_only: list[str] = []
        needs_request = False
        odfv_sources: dict[str, list[str]] = {}
        online_views: set[str] = set()
        for view, names in selection:
            dtypes = {f.name: f.dtype for f in view.features}
            if isinstance(view, OnDemandFeatureView):
                needs_request = needs_request or bool(view.source_request_sources)
                odfv_sources[view.name] = [p.name for p in view.source_feature_view_projections.values()]
            else:
                if not view.online:
                    offline_only.append(view.name)
                online_views.add(view.name)
            for name in names:
                specs.append(FeatureSpec(f"{view.name}:{name}", view.name, name, value_type(dtypes[name])))
        reads, odfvs = self._online_reads(selection)
        seen: dict[str, str] = {}
        for spec in specs:
            if spec.feature in seen:
                # Feast 0.67 drops python-mode on-demand outputs when full_feature_names=True, so
                # retrieval uses short names, which must therefore be unique in one selection.
                raise InvalidArgument(
                    "features", f"'{seen[spec.feature]}' and '{spec.name}' share a feature name"
                )
            seen[spec.feature] = spec.name
        return Plan(
            feast_features=feast_features,
            specs=specs,
            online_views=online_views,
            offline_only_views=offline_only,
            needs_request_data=needs_request,
            odfv_sources=odfv_sources,
            version=fs.tags.get(VERSION_TAG, "") if fs is not None else "",
            reads=reads,
            odfvs=odfvs,
        )

    def _online_reads(
        self, selection: list[tuple[FeatureView | OnDemandFeatureView, list[str]]]
    ) -> tuple[list[online.ViewRead], list[tuple[OnDemandFeatureView, list[tuple[str, str]]]]]:
        """What the online read fetches: each stored view once, with its requested features and the
        inputs of the selected on-demand views (which Feast also reads when they are not requested)."""
        wanted: dict[str, list[str]] = {}
        views: dict[str, FeatureView] = {}
        odfvs: list[tuple[OnDemandFeatureView, list[tuple[str, str]]]] = []

        def want(view: FeatureView, names: Sequence[str]) -> None:
            views.setdefault(view.name, view)
            have = wanted.setdefault(view.name, [])
            have.extend(n for n in names if n not in have)

        for view, names in selection:
            if isinstance(view, OnDemandFeatureView):
                reason = online.unsupported(view)
                if reason is not None:
                    raise FailedPrecondition(f"on-demand view '{view.name}' is not served online: {reason}")
                sources: list[tuple[str, str]] = []  # (stored view, feature) inputs
                for projection in view.source_feature_view_projections.values():
                    source = self.view(projection.name)
                    if not isinstance(source, FeatureView):
                        raise FailedPrecondition(f"on-demand view '{view.name}' reads '{projection.name}'")
                    features = [f.name for f in projection.features]
                    want(source, features)
                    sources.extend((source.name, f) for f in features)
                odfvs.append((view, sources))
            elif view.online:
                want(view, names)
        reads = [online.ViewRead(views[name], names) for name, names in wanted.items()]
        return reads, odfvs
