"""What the drift-service takes from the product it monitors (``creditrisk_products.Product``).

One product per process for now: ``settings.served_product`` reads it from the settings at start
(``DRIFT_SERVICE_PRODUCTS_DIR`` / ``DRIFT_SERVICE_PRODUCTS``); the core keeps the object and asks
it, through the functions here, for:

* the kinds of the monitored features (``[drift.features]``): the type check of logged values and
  the test of each reference column (a column the product does not list gets a kind from its
  dtype; a feature listed with ``monitor = false`` is never compared);
* the reference columns that are never features: the entity's join key, the label column and the
  times (:attr:`Product.non_feature_columns`), beside the platform's own (the score, ``label``,
  ``event_id``);
* the label of a reference dataset: ``[label].column``, its raw values mapped by
  ``[ingest].label_codes`` (compared stripped, case-insensitive) or already 1 / 0.
"""

from __future__ import annotations

import pandas as pd
from creditrisk_products import Product

from drift_service.domain import PREDICTION_COLUMN, FeatureKind

#: Reference and window columns of the platform itself, never monitored as features.
PLATFORM_COLUMNS = frozenset({PREDICTION_COLUMN, "label", "event_id", "event_timestamp"})


def feature_kinds(product: Product) -> dict[str, FeatureKind]:
    """Kind of every monitored feature of ``product``, by name."""
    return {name: FeatureKind(kind) for name, kind in product.drift.kinds().items()}


def excluded_columns(product: Product) -> frozenset[str]:
    """Reference columns never compared: the platform's, the product's non-feature columns (key,
    label, times) and the features it lists with ``monitor = false``."""
    unmonitored = {name for name, f in product.drift.features.items() if not f.monitor}
    return PLATFORM_COLUMNS | product.non_feature_columns | unmonitored


def label_values(product: Product, series: pd.Series) -> pd.Series:
    """The label as 1 / 0 (NaN where unreadable): text mapped by the product's
    ``[ingest].label_codes`` (stripped, case-insensitive), numbers kept."""
    codes = {str(k).strip().lower(): v for k, v in product.ingest.label_codes.items()}

    def one(value: object) -> object:
        return codes.get(value.strip().lower(), value) if isinstance(value, str) else value

    return pd.to_numeric(series.map(one), errors="coerce")
