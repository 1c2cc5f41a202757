"""Where the reference data of a drift computation comes from.

:class:`ReferenceResolver` is the interface the core calls; the request picks the branch:

* an explicit dataset URI (``ComputeDriftRequest.dataset_uri``): :class:`ExplicitDatasetResolver`
  reads a Parquet file or directory (a local path or a ``file://`` URI);
* the model version's training dataset (the default): found through the registry-gateway and
  MLflow lineage. That service does not exist yet, so the default resolver,
  :class:`UnwiredTrainingDatasetResolver`, answers FAILED_PRECONDITION asking for an explicit
  dataset; the registry-backed resolver will implement the same interface.

A reference frame holds the model's feature columns and, for prediction drift, a
``probability_of_default`` column (the model's scores of those rows; out-of-fold for a training
set); optionally a label column for the reference AUC.
"""

from __future__ import annotations

import abc
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pandas as pd
from creditrisk_kit import FailedPrecondition, NotFound, PreconditionViolation

from drift_service.domain import DatasetRef


@dataclass(frozen=True)
class ReferenceData:
    """A reference dataset and where it came from."""

    frame: pd.DataFrame
    ref: DatasetRef


class ReferenceResolver(abc.ABC):
    """Finds the reference data of one model version."""

    @abc.abstractmethod
    def resolve(self, model_name: str, model_version: int, dataset_uri: str | None) -> ReferenceData:
        """The reference of ``model_name`` version ``model_version``.

        Args:
            model_name: registered model name.
            model_version: model version.
            dataset_uri: an explicit dataset, or None for the version's training dataset.

        Raises:
            NotFound: an unknown model version or an unreadable dataset.
            FailedPrecondition: the reference cannot be found this way (yet).
        """


def _local_path(uri: str) -> Path | None:
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        return Path(unquote(parts.path if parts.scheme else uri))
    if len(parts.scheme) == 1:  # a Windows drive letter
        return Path(uri)
    return None


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    files = sorted(p for p in path.rglob("*.parquet")) if path.is_dir() else [path]
    for file in files:
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                sha.update(chunk)
    return sha.hexdigest()[:16]


class ExplicitDatasetResolver(ReferenceResolver):
    """Reads an explicit Parquet dataset (file or directory), cached by path, size and mtime."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int, int], ReferenceData] = {}
        self._lock = threading.Lock()

    def resolve(self, model_name: str, model_version: int, dataset_uri: str | None) -> ReferenceData:
        if not dataset_uri:
            raise NotFound("reference dataset", "", description="no dataset URI given")
        path = _local_path(dataset_uri)
        if path is None:
            raise NotFound("reference dataset", dataset_uri, description="only local paths and file:// URIs")
        try:
            stat = path.stat()
            key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
            with self._lock:
                cached = self._cache.get(key)
            if cached is not None:
                return cached
            frame = pd.read_parquet(path)
        except (OSError, ValueError, ImportError) as exc:
            raise NotFound(
                "reference dataset", dataset_uri, description=f"unreadable: {type(exc).__name__}"
            ) from exc
        data = ReferenceData(frame=frame, ref=DatasetRef(source=dataset_uri, digest=_digest(path)))
        with self._lock:
            self._cache = {key: data}  # one entry: references are large
        return data


class UnwiredTrainingDatasetResolver(ReferenceResolver):
    """Placeholder for the training-dataset reference until the registry-gateway exists."""

    def resolve(self, model_name: str, model_version: int, dataset_uri: str | None) -> ReferenceData:
        raise FailedPrecondition(
            "the training-dataset reference needs the registry-gateway, which is not wired yet; "
            "pass reference.dataset_uri",
            [
                PreconditionViolation(
                    type="REFERENCE_UNAVAILABLE",
                    subject=f"{model_name}/{model_version}",
                    description="set ComputeDriftRequest.dataset_uri to a Parquet dataset",
                )
            ],
        )


class RequestReferenceResolver(ReferenceResolver):
    """Dispatches on the request: an explicit URI, or the training dataset (the default)."""

    def __init__(
        self,
        explicit: ReferenceResolver | None = None,
        training: ReferenceResolver | None = None,
    ) -> None:
        self.explicit = explicit or ExplicitDatasetResolver()
        self.training = training or UnwiredTrainingDatasetResolver()

    def resolve(self, model_name: str, model_version: int, dataset_uri: str | None) -> ReferenceData:
        if dataset_uri:
            return self.explicit.resolve(model_name, model_version, dataset_uri)
        return self.training.resolve(model_name, model_version, None)
