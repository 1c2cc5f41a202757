"""Credit products as configuration: a Feast feature repository plus one validated product file.

See :mod:`creditrisk_products.definition` (the file) and :mod:`creditrisk_products.catalog` (the
products one process serves). No Feast import here: the feature-service reads the Feast repository.
"""

from creditrisk_products.catalog import Catalog, UnknownProduct, load_catalog
from creditrisk_products.definition import (
    PRODUCT_FILE,
    FeatureKind,
    Product,
    ProductError,
    load_product,
    parse_product,
)
from creditrisk_products.settings import ProductSettings, checkout_products_dir, exit_bad_product

__all__ = [
    "PRODUCT_FILE",
    "Catalog",
    "FeatureKind",
    "Product",
    "ProductError",
    "ProductSettings",
    "UnknownProduct",
    "checkout_products_dir",
    "exit_bad_product",
    "load_catalog",
    "load_product",
    "parse_product",
]
