"""The credit-risk platform's Kubeflow pipelines (kfp 2.17): ``training`` and ``monitoring``.

Components (:mod:`creditrisk_pipelines.components`) are thin gRPC clients of the services
(:mod:`creditrisk_pipelines.ops`); the pipelines (:mod:`creditrisk_pipelines.pipelines`) compile
to Kubeflow IR YAML (:mod:`creditrisk_pipelines.compile`, ``make pipelines``) and run on one
machine with ``kfp.local`` (:mod:`creditrisk_pipelines.local`).
"""

import os

__version__ = "0.1.0"

#: Environment variable that overrides the components' image at compile time.
IMAGE_ENV = "CREDITRISK_PIPELINES_IMAGE"
#: The pipelines' own image (this package and its locked environment), built by the deploy issue.
DEFAULT_IMAGE = f"ghcr.io/creditrisk/pipelines:{__version__}"


def pipelines_image() -> str:
    """The components' image: ``$CREDITRISK_PIPELINES_IMAGE``, else :data:`DEFAULT_IMAGE`."""
    return os.environ.get(IMAGE_ENV, "").strip() or DEFAULT_IMAGE
