"""The layout of a product's data as the service uses it: views, their columns, the entity key.

No Feast import: ingestion validation and the offline writers know the layout without importing
Feast. :func:`feature_service.product.load_layout` builds a :class:`ProductLayout` from a product's
Feast repository and its ``product.toml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created_timestamp"
#: Column of a labelled-entities result: the label's event timestamp (when it became known).
LABEL_TIMESTAMP = "label_timestamp"

#: Column kinds: ``int`` (int64), ``float`` (float64), ``bool``, ``string``, ``timestamp`` (UTC, us).
Kind = Literal["int", "float", "bool", "string", "timestamp"]


@dataclass(frozen=True)
class ViewSpec:
    """One feature view and its offline table.

    Attributes:
        name: feature view name.
        table: offline table name (Parquet file stem, or PostgreSQL table in the offline schema).
        features: ``(column, kind)`` pairs, in table order.
        online: whether the view is materialized to the online store (labels are not).
        push: whether the view has a push source for fresh values.
        description: what the view holds.
        extras: ``(column, kind)`` pairs of further offline columns that are not Feast features
            (nullable; e.g. the label table's application time column).
        key: the entity's join key (the table's first column).
        key_kind: its kind, ``int`` or ``string``.
        push_source_name: name of the view's push source ("" without one).
    """

    name: str
    table: str
    features: tuple[tuple[str, Kind], ...]
    online: bool = True
    push: bool = True
    description: str = ""
    extras: tuple[tuple[str, Kind], ...] = ()
    key: str = "entity_id"
    key_kind: Kind = "int"
    push_source_name: str = ""

    @property
    def feature_names(self) -> list[str]:
        """Feature columns, in table order."""
        return [name for name, _ in self.features]

    @property
    def columns(self) -> list[str]:
        """All columns of the offline table, in order: key, features, extras, event and created time."""
        return [
            self.key,
            *self.feature_names,
            *(name for name, _ in self.extras),
            EVENT_TIMESTAMP,
            CREATED_TIMESTAMP,
        ]


@dataclass(frozen=True)
class OnDemandSpec:
    """One on-demand feature view.

    Attributes:
        name: its name.
        features: ``(name, kind)`` of the features it computes.
        request_source: the request source it reads ("" = none).
        request_fields: ``(field, kind)`` of its request sources' fields, in order.
    """

    name: str
    features: tuple[tuple[str, Kind], ...]
    request_source: str = ""
    request_fields: tuple[tuple[str, Kind], ...] = ()


@dataclass(frozen=True)
class ProductLayout:
    """What the service needs to know of one product's data (replaces per-product constants).

    Attributes:
        product: the product's name.
        project: the Feast project of its repository (``[product].feast_project``).
        entity_name: the Feast entity every view is keyed by.
        entity_key: its join key; ``entity_kind``: ``int`` or ``string``.
        views: every batch feature view, in the repository's order (ingestion order).
        model_service: the feature service of the model's inputs; ``model_views``: its batch views.
        fairness_service: the feature service of the protected attributes ("" = none).
        label_view: the offline-only view of the label; ``label_column``: the label's column in it.
        application_time_column: the label view's extra column: when the labelled application was
            made (a timestamp, not a Feast feature).
        feature_services: every feature service's name.
        on_demand: the on-demand feature views.
        request_fields: caller-facing request field -> request source field (``[serving]``).
    """

    product: str
    project: str
    entity_name: str
    entity_key: str
    entity_kind: Kind
    views: tuple[ViewSpec, ...]
    model_service: str
    model_views: tuple[ViewSpec, ...]
    fairness_service: str
    label_view: ViewSpec
    label_column: str
    application_time_column: str
    feature_services: tuple[str, ...] = ()
    on_demand: tuple[OnDemandSpec, ...] = ()
    request_fields: dict[str, str] = field(default_factory=dict)

    @property
    def views_by_name(self) -> dict[str, ViewSpec]:
        """Every batch view, by name."""
        return {v.name: v for v in self.views}

    @property
    def request_aliases(self) -> dict[str, str]:
        """Every name a request value is accepted under (caller-facing or the source's) -> the latter."""
        return {**self.request_fields, **{v: v for v in self.request_source_fields}}

    @property
    def request_source_fields(self) -> dict[str, Kind]:
        """Every field of the on-demand views' request sources and its kind (sent null when not given)."""
        return {name: kind for odfv in self.on_demand for name, kind in odfv.request_fields}

    @property
    def request_names(self) -> list[str]:
        """The names a request value is accepted under, caller-facing first (for error messages)."""
        return list(dict.fromkeys([*self.request_fields, *self.request_source_fields]))

    def view(self, name: str) -> ViewSpec:
        """The batch view ``name``.

        Raises:
            KeyError: no such view.
        """
        return self.views_by_name[name]
