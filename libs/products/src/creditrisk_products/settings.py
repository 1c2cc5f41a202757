"""The two settings every service reads its products by: ``<PREFIX>_PRODUCTS_DIR`` and ``<PREFIX>_PRODUCTS``.

Mix :class:`ProductSettings` into a service's settings class; :meth:`ProductSettings.catalog` loads
the products once per call (the caller keeps the result).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from creditrisk_products.catalog import Catalog, load_catalog
from creditrisk_products.definition import ProductError


def checkout_products_dir(start: Path | None = None) -> Path | None:
    """The ``products/`` folder of the monorepo checkout holding ``start`` (default: the cwd), if any.

    A checkout is recognised by ``services/``, ``libs/`` and ``products/`` side by side.
    """
    here = (start or Path.cwd()).resolve()
    for parent in (here, *here.parents):
        if (parent / "products").is_dir() and (parent / "services").is_dir() and (parent / "libs").is_dir():
            return parent / "products"
    return None


class ProductSettings(BaseModel):
    """Settings of the products a service serves (mix into a ``ServiceSettings`` subclass).

    Attributes:
        products_dir: the folder of product folders (each with a ``product.toml`` and a Feast
            repository), or one product's folder; unset: the checkout's ``products/`` when the
            process runs inside one (the working directory's, else this library's).
        products: the products to serve, by name; empty: every product in ``products_dir``.
    """

    products_dir: Path | None = None
    products: list[str] = Field(default_factory=list)

    def resolved_products_dir(self) -> Path:
        """The products folder in effect.

        Raises:
            ProductError: unset and the process runs outside a checkout.
        """
        if self.products_dir is not None:
            return self.products_dir
        found = checkout_products_dir() or checkout_products_dir(Path(__file__).parent)
        if found is None:
            raise ProductError("products", [("", "set <PREFIX>_PRODUCTS_DIR: no products/ folder found")])
        return found

    def catalog(self) -> Catalog:
        """Load the products served.

        Raises:
            ProductError: the folder or a product is missing or invalid (file and key named).
        """
        return load_catalog(self.resolved_products_dir(), self.products)
