"""What the inference-gateway takes from the product it serves (``creditrisk_products.Product``).

One product per process for now: :func:`load_product_or_exit` reads it from the settings at start
(``INFERENCE_GATEWAY_PRODUCTS_DIR`` / ``INFERENCE_GATEWAY_PRODUCTS``). The gateway reads:

* ``[features].model_service``: the Feast feature service read for enrichment;
* ``[entity].join_key``: the name the entity key (the contract's ``applicant_id``) is sent under to
  the feature-service;
* ``[serving].request_fields``: the request values (caller-facing names) the OpenAPI schema lists;
  the names accepted are the ones the feature service declares (the same, read from the
  feature-service's ``GetFeatureService``) and its stored features;
* ``[product].registered_model``: the model the slots serve, unless ``model_name`` is set.
"""

from __future__ import annotations

import sys

from creditrisk_kit.settings import EXIT_BAD_CONFIGURATION
from creditrisk_products import Product, ProductError, ProductSettings, UnknownProduct


def load_product_or_exit(settings: ProductSettings, service: str = "inference-gateway") -> Product:
    """The one product the settings name (``catalog().get()``).

    Raises:
        SystemExit: status 2 (the kit's bad-configuration status) when the products folder or the
            product is missing or invalid, or several are served and none is named; the product
            file and key at fault are printed on stderr (as a bad setting is).
    """
    try:
        return settings.catalog().get()
    except (ProductError, UnknownProduct) as exc:
        problems = [f"  {line}" for line in str(exc).splitlines()]
        print("\n".join([f"{service}: invalid product configuration:", *problems]), file=sys.stderr)
        raise SystemExit(EXIT_BAD_CONFIGURATION) from None
