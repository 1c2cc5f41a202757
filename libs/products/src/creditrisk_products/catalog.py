"""The products a process serves: every product folder under one directory.

Each service takes its products from configuration (``<PREFIX>_PRODUCTS_DIR``, and
``<PREFIX>_PRODUCTS`` to serve some of them): a request names its product, or leaves it empty
where the catalogue holds exactly one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from creditrisk_products.definition import PRODUCT_FILE, Product, ProductError, load_product


class UnknownProduct(LookupError):
    """A request named a product this process does not serve, or named none where several are served.

    Attributes:
        name: the name asked for ("" = none given).
        known: the products served.
    """

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = tuple(known)
        if name:
            msg = f"unknown product {name!r}; served: {', '.join(self.known) or 'none'}"
        else:
            msg = (
                f"several products are served ({', '.join(self.known)}): name one (a request's product; "
                "for a service, <PREFIX>_PRODUCTS as a JSON list of one name: one product per process)"
            )
        super().__init__(msg)


@dataclass(frozen=True)
class Catalog:
    """Products by name.

    Attributes:
        products: every product served, by name.
    """

    products: dict[str, Product]

    def __post_init__(self) -> None:
        projects: dict[str, str] = {}
        for name, product in self.products.items():
            other = projects.setdefault(product.product.feast_project, name)
            if other != name:
                raise ProductError(
                    product.file,
                    [("[product].feast_project", f"{product.product.feast_project!r} is also {other!r}'s")],
                )

    def get(self, name: str = "") -> Product:
        """The product ``name``; with ``""``, the only product served.

        Raises:
            UnknownProduct: not served, or ``""`` while several are.
        """
        if name:
            if name in self.products:
                return self.products[name]
            raise UnknownProduct(name, sorted(self.products))
        if len(self.products) == 1:
            return next(iter(self.products.values()))
        raise UnknownProduct("", sorted(self.products))

    @property
    def names(self) -> list[str]:
        """The products' names, sorted."""
        return sorted(self.products)

    def __iter__(self) -> Iterator[Product]:
        return iter(self.products[n] for n in self.names)

    def __len__(self) -> int:
        return len(self.products)


def load_catalog(folder: Path | str, names: Sequence[str] = ()) -> Catalog:
    """Load the products under ``folder`` (each a sub-folder with a ``product.toml``).

    Args:
        folder: the products directory; or one product's own folder.
        names: the products to serve (empty = every product found).

    Returns:
        The catalogue.

    Raises:
        ProductError: the folder holds no product, a named product is missing, or a product is
            invalid (the first invalid one; its problems all named).
    """
    folder = Path(folder).resolve()
    if (folder / PRODUCT_FILE).is_file():
        found = {folder.name: folder}
    else:
        if not folder.is_dir():
            raise ProductError(folder, [("", "products directory not found")])
        found = {p.parent.name: p.parent for p in sorted(folder.glob(f"*/{PRODUCT_FILE}"))}
    if not found:
        raise ProductError(folder, [("", f"no product here (a sub-folder with a {PRODUCT_FILE})")])
    wanted = list(names) or sorted(found)
    missing = [n for n in wanted if n not in found]
    if missing:
        raise ProductError(
            folder, [("", f"no product {', '.join(missing)}; found: {', '.join(sorted(found))}")]
        )
    return Catalog({n: load_product(found[n]) for n in wanted})
