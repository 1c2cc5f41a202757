"""The skops allow-list: refusal of anything outside it, with the types named; a model saved with
skops loads with exactly its recorded types."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skops.io
from creditrisk_model_artifacts import (
    TRUSTED_TYPES_ALLOWED,
    UntrustedModel,
    check_trusted_types,
    load_sklearn_flavor,
    needed_trusted_types,
)
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier


class HomeMadeClassifier(ClassifierMixin, BaseEstimator):
    """A classifier skops cannot know: a model holding it must be refused."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> HomeMadeClassifier:
        self.classes_ = np.unique(y)
        return self


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    return x, (x[:, 0] + 0.5 * rng.normal(size=200) > 0).astype(int)


def test_check_keeps_allowed_types_sorted_once() -> None:
    assert check_trusted_types(["sklearn.tree._tree.Tree", "numpy.dtype", "numpy.dtype"]) == [
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
    ]


def test_an_untrusted_type_is_refused_with_a_clear_error() -> None:
    with pytest.raises(UntrustedModel) as info:
        check_trusted_types(["numpy.dtype", "posix.system", "builtins.eval"])
    assert info.value.types == ("builtins.eval", "posix.system")
    message = str(info.value)
    assert "outside the trusted allow-list: ['builtins.eval', 'posix.system']" in message
    assert "numpy.dtype" in message  # the allowed types are listed for the reader
    assert isinstance(info.value, ValueError)


def test_needed_types_of_a_fitted_model_are_within_the_allow_list(data) -> None:
    model = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(*data)
    needed = needed_trusted_types(model)
    assert "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor" in needed
    assert set(needed) <= TRUSTED_TYPES_ALLOWED


def test_a_model_needing_an_unknown_type_is_refused_when_saving(data) -> None:
    with pytest.raises(UntrustedModel, match="HomeMadeClassifier") as info:
        needed_trusted_types(HomeMadeClassifier().fit(*data))
    assert any(t.endswith("HomeMadeClassifier") for t in info.value.types)


def test_load_with_the_recorded_types(tmp_path: Path, data) -> None:
    model = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(*data)
    skops.io.dump(model, tmp_path / "model.skops")
    flavor = {"serialization_format": "skops", "skops_trusted_types": needed_trusted_types(model)}
    loaded = load_sklearn_flavor(tmp_path, flavor)
    np.testing.assert_array_equal(loaded.predict_proba(data[0]), model.predict_proba(data[0]))


def test_load_refuses_recorded_types_outside_the_allow_list_before_reading(tmp_path: Path) -> None:
    # no file at all: the refusal comes before anything is read
    flavor = {"serialization_format": "skops", "skops_trusted_types": ["builtins.exec"]}
    with pytest.raises(UntrustedModel, match=r"\['builtins.exec'\]"):
        load_sklearn_flavor(tmp_path, flavor)


def test_load_refuses_a_file_needing_more_than_recorded(tmp_path: Path, data) -> None:
    model = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(*data)
    skops.io.dump(model, tmp_path / "model.skops")
    with pytest.raises(skops.io.exceptions.UntrustedTypesFoundException):
        load_sklearn_flavor(tmp_path, {"serialization_format": "skops", "skops_trusted_types": []})


def test_load_refuses_pickle(tmp_path: Path) -> None:
    flavor = {"serialization_format": "cloudpickle", "pickled_model": "model.pkl"}
    with pytest.raises(UntrustedModel, match="not saved with skops: serialization_format 'cloudpickle'"):
        load_sklearn_flavor(tmp_path, flavor)
