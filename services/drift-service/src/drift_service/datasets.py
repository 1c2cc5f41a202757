"""Explicit local reference datasets (``ComputeDriftRequest.dataset_uri``), limited to configured
roots, with a bounded directory walk (issue 18: "Dataset URIs are limited to configured roots and
schemes, with no unbounded directory walk").

Accepted forms: an absolute local path (``/data/ref/reference.parquet``) or a ``file://`` URI
(``file:///data/ref/`` or ``file://localhost/...``); ``runs:/`` URIs go to MLflow
(:mod:`drift_service.reference`). Every other scheme, a relative path or a ``file://`` URI naming
another host -> INVALID_ARGUMENT naming the URI.

A path is resolved first (symlinks followed, ``..`` collapsed: :meth:`pathlib.Path.resolve`) and
must then lie under one of ``DRIFT_SERVICE_DATASET_ROOTS`` (each resolved the same way); else
PERMISSION_DENIED naming the URI and the setting, before anything is read or its existence
revealed. No roots (the default): every explicit local path is refused so.

A directory: only its ``*.parquet`` files, at most ``DRIFT_SERVICE_DATASET_MAX_DEPTH`` directory
levels below it (0: its own files only) and at most ``DRIFT_SERVICE_DATASET_MAX_FILES`` of them;
a deeper subdirectory, more files, or a file resolving outside the roots (a symlink inside the
directory) -> INVALID_ARGUMENT / PERMISSION_DENIED naming the limit and its setting, found
without walking past the limit. Only the listed files are read (pyarrow, hive partitioning
relative to the directory) and digested.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pandas as pd
from creditrisk_kit import InvalidArgument, NotFound, PermissionDenied

from drift_service.domain import DatasetRef

ROOTS_SETTING = "DRIFT_SERVICE_DATASET_ROOTS"
DEPTH_SETTING = "DRIFT_SERVICE_DATASET_MAX_DEPTH"
FILES_SETTING = "DRIFT_SERVICE_DATASET_MAX_FILES"
#: Entries (of any kind) looked at in one directory walk, per allowed Parquet file: a folder of
#: mostly other files is refused too instead of being listed without end.
ENTRIES_PER_FILE = 10
FIELD = "dataset_uri"


@dataclass(frozen=True)
class DatasetLimits:
    """Where explicit datasets may be read from, and how much of a directory.

    Attributes:
        roots: allowed local folders (resolved when checked); empty: every local path refused.
        max_depth: directory levels below a dataset directory (0: its own files only).
        max_files: most Parquet files of one dataset directory.
    """

    roots: tuple[Path, ...] = ()
    max_depth: int = 3
    max_files: int = 1000


def local_path(uri: str) -> Path:
    """The absolute local path a dataset URI names (not yet checked against the roots).

    Raises:
        InvalidArgument: another scheme, a ``file://`` URI of another host, a relative path or a
            NUL character.
    """
    parts = urlsplit(uri)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidArgument(FIELD, f"{uri!r}: a file:// URI of another host is not read")
        path = Path(unquote(parts.path))
    elif parts.scheme == "" or (len(parts.scheme) == 1 and uri[1:2] == ":"):
        path = Path(uri)
    else:
        raise InvalidArgument(
            FIELD,
            f"{uri!r}: scheme {parts.scheme!r} not accepted; use runs:/<run id>/<path> (MLflow), "
            f"file:// or an absolute path under {ROOTS_SETTING}",
        )
    if "\x00" in str(path):  # os.path.realpath raises ValueError on it
        raise InvalidArgument(FIELD, f"{uri!r}: a path with a NUL character")
    if not path.is_absolute():
        raise InvalidArgument(FIELD, f"{uri!r}: a relative path; give an absolute path under {ROOTS_SETTING}")
    return path


def _outside(uri: str, roots: Sequence[Path]) -> PermissionDenied:
    if not roots:
        return PermissionDenied(
            f"dataset_uri {uri!r}: explicit local datasets are not allowed ({ROOTS_SETTING} is empty)"
        )
    return PermissionDenied(
        f"dataset_uri {uri!r} resolves outside every allowed root ({ROOTS_SETTING}: "
        f"{', '.join(str(r) for r in roots)})"
    )


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def allowed_path(uri: str, limits: DatasetLimits) -> Path:
    """The resolved path of ``uri`` when it lies under an allowed root.

    Raises:
        InvalidArgument: see :func:`local_path`.
        PermissionDenied: no roots, or the resolved path (symlinks, ``..``) is outside them.
    """
    path = local_path(uri)
    roots = [Path(os.path.realpath(root)) for root in limits.roots]
    resolved = Path(os.path.realpath(path))  # never raises: follows what exists
    if not _under(resolved, roots):
        raise _outside(uri, roots)
    return resolved


def parquet_files(uri: str, path: Path, limits: DatasetLimits) -> list[Path]:
    """The Parquet files of a dataset: the file itself, or a directory's within the limits.

    Args:
        uri: the URI as given (named in errors).
        path: its resolved path (:func:`allowed_path`).
        limits: the roots, depth and count.

    Raises:
        NotFound: nothing there, or a directory without Parquet files.
        InvalidArgument: a subdirectory deeper than ``max_depth``, or more than ``max_files``.
        PermissionDenied: a file that resolves outside the roots (a symlink).
    """
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise NotFound("reference dataset", uri, description="no such file or directory")
    roots = [Path(os.path.realpath(root)) for root in limits.roots]
    files: list[Path] = []
    budget = ENTRIES_PER_FILE * limits.max_files
    pending: list[tuple[Path, int]] = [(path, 0)]
    while pending:
        directory, depth = pending.pop()
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                budget -= 1
                if budget < 0:
                    raise InvalidArgument(
                        FIELD,
                        f"{uri!r}: more than {ENTRIES_PER_FILE * limits.max_files} entries "
                        f"({ENTRIES_PER_FILE} x {FILES_SETTING}={limits.max_files}); not read",
                    )
                if entry.is_dir(follow_symlinks=False):
                    if depth + 1 > limits.max_depth:
                        raise InvalidArgument(
                            FIELD,
                            f"{uri!r}: subdirectory {entry.name!r} is deeper than "
                            f"{DEPTH_SETTING}={limits.max_depth} levels; not read",
                        )
                    pending.append((Path(entry.path), depth + 1))
                elif entry.name.endswith(".parquet") and not entry.name.startswith((".", "_")):
                    resolved = Path(os.path.realpath(entry.path))
                    if not _under(resolved, roots):
                        raise _outside(f"{uri} ({entry.name})", roots)
                    if not resolved.is_file():
                        continue
                    files.append(resolved)
                    if len(files) > limits.max_files:
                        raise InvalidArgument(
                            FIELD,
                            f"{uri!r}: more than {FILES_SETTING}={limits.max_files} Parquet files; not read",
                        )
    if not files:
        raise NotFound("reference dataset", uri, description="a directory without Parquet files")
    return sorted(files)


def sha256_of(files: Sequence[Path]) -> str:
    """The sha256 (hex) of the files' bytes, in the given order."""
    sha = hashlib.sha256()
    for file in files:
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                sha.update(chunk)
    return sha.hexdigest()


def _read(path: Path, files: Sequence[Path]) -> pd.DataFrame:
    if len(files) == 1 and files[0] == path:
        return pd.read_parquet(path)
    import pyarrow.dataset as pads

    dataset = pads.dataset(
        [str(f) for f in files], format="parquet", partitioning="hive", partition_base_dir=str(path)
    )
    return dataset.to_table().to_pandas()


class LocalDatasets:
    """Reads an explicit Parquet dataset (file or directory) within :class:`DatasetLimits`,
    cached by its files' paths, sizes and modification times (one entry: references are large).

    Args:
        limits: the allowed roots and the directory limits (default: no roots, every path refused).
    """

    def __init__(self, limits: DatasetLimits | None = None) -> None:
        self.limits = limits or DatasetLimits()
        self._cache: dict[tuple[tuple[str, int, int], ...], tuple[pd.DataFrame, str]] = {}
        self._lock = threading.Lock()

    def read(self, dataset_uri: str) -> tuple[pd.DataFrame, DatasetRef]:
        """The frame and reference of ``dataset_uri``.

        Raises:
            InvalidArgument: a scheme, form or directory beyond the limits (see the module).
            PermissionDenied: outside the roots (``DRIFT_SERVICE_DATASET_ROOTS``).
            NotFound: missing or unreadable.
        """
        path = allowed_path(dataset_uri, self.limits)
        try:
            files = parquet_files(dataset_uri, path, self.limits)
            key = tuple((str(f), (s := f.stat()).st_size, s.st_mtime_ns) for f in files)
            with self._lock:
                cached = self._cache.get(key)
            if cached is None:
                cached = (_read(path, files), sha256_of(files)[:16])
                with self._lock:
                    self._cache = {key: cached}
        except (OSError, ValueError, ImportError) as exc:
            raise NotFound(
                "reference dataset", dataset_uri, description=f"unreadable: {type(exc).__name__}"
            ) from exc
        frame, digest = cached
        return frame, DatasetRef(source=dataset_uri, digest=digest)
