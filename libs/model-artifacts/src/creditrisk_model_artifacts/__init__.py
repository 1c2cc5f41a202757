"""A model version's artifacts, as every service that writes, registers or serves a model sees them.

* :mod:`~creditrisk_model_artifacts.digests`: sha256 of every artifact file, the version tags
  ``registry.sha256.<key>`` recording them, and their check before anything is loaded.
* :mod:`~creditrisk_model_artifacts.trusted_types`: the skops trusted-type allow-list, the types a
  fitted model needs, and loading a model saved with skops with exactly its recorded types
  (extra ``skops``).
* :mod:`~creditrisk_model_artifacts.onnx_scorer` (extra ``onnx``): the ONNX fast scorer under
  onnxruntime, following ``scorer.json`` (imported on demand, not re-exported here).
"""

from .digests import (
    DIGEST_TAG_PREFIX,
    FAST_SCORER_DIR,
    MODEL_DIR,
    DigestMismatch,
    digest_tags,
    digests_from_tags,
    sha256_file,
    sha256_tree,
    verify_digests,
)
from .trusted_types import (
    SKOPS_FORMAT,
    TRUSTED_TYPES_ALLOWED,
    UntrustedModel,
    check_trusted_types,
    load_sklearn_flavor,
    needed_trusted_types,
)

__all__ = [
    "DIGEST_TAG_PREFIX",
    "FAST_SCORER_DIR",
    "MODEL_DIR",
    "SKOPS_FORMAT",
    "TRUSTED_TYPES_ALLOWED",
    "DigestMismatch",
    "UntrustedModel",
    "check_trusted_types",
    "digest_tags",
    "digests_from_tags",
    "load_sklearn_flavor",
    "needed_trusted_types",
    "sha256_file",
    "sha256_tree",
    "verify_digests",
]
