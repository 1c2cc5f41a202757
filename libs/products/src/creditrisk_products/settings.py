"""The two settings every service reads its products by: ``<PREFIX>_PRODUCTS_DIR`` and ``<PREFIX>_PRODUCTS``.

Mix :class:`ProductSettings` into a service's settings class; :meth:`ProductSettings.catalog` loads
the products once per call (the caller keeps the result).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

from pydantic import BaseModel, Field

from creditrisk_products.catalog import Catalog, UnknownProduct, load_catalog
from creditrisk_products.definition import Product, ProductError

#: The exit status of a bad configuration, as ``creditrisk_kit.settings.EXIT_BAD_CONFIGURATION``
#: (this library does not depend on the kit; a test checks both agree).
EXIT_BAD_CONFIGURATION = 2


def exit_bad_product(service: str, error: Exception) -> NoReturn:
    """Print ``error`` (every problem, each naming its file and key) on stderr and exit with 2.

    Raises:
        SystemExit: always, status :data:`EXIT_BAD_CONFIGURATION`.
    """
    problems = [f"  {line}" for line in str(error).splitlines()]
    print("\n".join([f"{service}: invalid product configuration:", *problems]), file=sys.stderr)
    raise SystemExit(EXIT_BAD_CONFIGURATION)


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

    def served_product(self, service: str) -> Product:
        """The one product the process serves (``catalog().get()``), for a service's start.

        Raises:
            SystemExit: status 2 when the products folder or the product is missing or invalid, or
                several are served (one product per process for now); stderr names the file and
                key at fault (:func:`exit_bad_product`).
        """
        try:
            return self.catalog().get()
        except (ProductError, UnknownProduct) as exc:
            exit_bad_product(service, exc)
