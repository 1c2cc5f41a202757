"""The skops trusted-type allow-list: what a saved scikit-learn model may need beyond skops' defaults.

A model is saved with skops (never pickle) and its MLflow ``sklearn`` flavor records the exact
types skops does not trust by default that the pipeline needs (``skops_trusted_types``). The
training-service computes them from the fitted pipeline (:func:`needed_trusted_types`) and the
registry-gateway and the model-server load a model with exactly those (:func:`load_sklearn_flavor`);
all three refuse any type outside :data:`TRUSTED_TYPES_ALLOWED`. No blanket trust.

The skops functions need the ``skops`` extra (imported on call).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

TRUSTED_TYPES_ALLOWED: frozenset[str] = frozenset(
    {
        # the encoders' dtype parameter
        "numpy.dtype",
        # HistGradientBoostingClassifier's fitted trees
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        # the random forest's trees
        "sklearn.tree._tree.Tree",
        # soft-voting ensemble: the union of its members' types above, plus the Bunch that
        # VotingClassifier keeps its fitted members in (``named_estimators_``)
        "sklearn.utils._bunch.Bunch",
    }
)
"""skops types accepted beyond skops' defaults: the types the platform's pipelines need."""
SKOPS_FORMAT = "skops"
"""The ``serialization_format`` of an MLflow ``sklearn`` flavor saved with skops."""


class UntrustedModel(ValueError):
    """A model that must not be loaded: not saved with skops, or needing types outside the allow-list.

    Attributes:
        types: the types outside :data:`TRUSTED_TYPES_ALLOWED`, sorted (empty for a wrong format).
    """

    def __init__(self, message: str, types: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.types = tuple(sorted(types))


def check_trusted_types(types: Iterable[str]) -> list[str]:
    """The types, sorted and de-duplicated, when every one is in :data:`TRUSTED_TYPES_ALLOWED`.

    Raises:
        UntrustedModel: a type outside the allow-list (every such type is named in the message).
    """
    wanted = sorted({str(t) for t in types})
    unexpected = [t for t in wanted if t not in TRUSTED_TYPES_ALLOWED]
    if unexpected:
        raise UntrustedModel(
            f"the model needs skops types outside the trusted allow-list: {unexpected} "
            f"(allowed beyond skops' defaults: {sorted(TRUSTED_TYPES_ALLOWED)})",
            unexpected,
        )
    return wanted


def needed_trusted_types(model: Any) -> list[str]:
    """The types skops does not trust by default that ``model`` needs (to record with it), sorted.

    Raises:
        UntrustedModel: the model needs a type outside :data:`TRUSTED_TYPES_ALLOWED`.
    """
    import skops.io

    return check_trusted_types(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


def load_sklearn_flavor(model_dir: Path, flavor: Mapping[str, Any]) -> Any:
    """Load the scikit-learn model of an MLflow model folder with skops and exactly the trusted
    types its ``sklearn`` flavor records; anything else in the file makes skops refuse to load.

    Args:
        model_dir: the downloaded model folder (``MLmodel``, ``model.skops`` ...).
        flavor: the ``sklearn`` flavor of its ``MLmodel`` (``serialization_format``,
            ``skops_trusted_types``, ``pickled_model``).

    Raises:
        UntrustedModel: not skops, or recorded types outside :data:`TRUSTED_TYPES_ALLOWED`.
        skops.io.exceptions.UntrustedTypesFoundException: the file needs a type not recorded.
        OSError: the model file cannot be read.
    """
    import skops.io

    fmt = flavor.get("serialization_format")
    if fmt != SKOPS_FORMAT:
        raise UntrustedModel(f"the sklearn flavor is not saved with skops: serialization_format {fmt!r}")
    trusted = check_trusted_types(flavor.get("skops_trusted_types") or [])
    return skops.io.load(model_dir / str(flavor.get("pickled_model", "model.skops")), trusted=trusted)
