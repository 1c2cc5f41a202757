"""Explicit dataset URIs limited to ``DRIFT_SERVICE_DATASET_ROOTS`` with a bounded directory walk
(:mod:`drift_service.datasets`): traversal, symlink escapes, schemes, depth and count."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from creditrisk_kit import InvalidArgument, NotFound, PermissionDenied
from drift_service.datasets import DatasetLimits, LocalDatasets
from drift_service.settings import DriftServiceSettings
from pydantic import ValidationError

FRAME = pd.DataFrame({"age_in_years": [30, 40, 50], "credit_amount": [1000, 2000, 3000]})


@pytest.fixture
def places(tmp_path: Path) -> tuple[Path, Path]:
    """An allowed root with ``ref.parquet`` and a secret outside it with ``secret.parquet``."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    FRAME.to_parquet(root / "ref.parquet")
    FRAME.assign(age_in_years=[99, 99, 99]).to_parquet(outside / "secret.parquet")
    return root, outside


def resolver(root: Path, **limits: int) -> LocalDatasets:
    return LocalDatasets(DatasetLimits((root,), **limits))


def test_a_file_under_the_root_is_read_as_path_and_file_uri(places: tuple[Path, Path]) -> None:
    root, _ = places
    reader = resolver(root)
    frame, ref = reader.read(str(root / "ref.parquet"))
    pd.testing.assert_frame_equal(frame, FRAME)
    assert (ref.source, len(ref.digest)) == (str(root / "ref.parquet"), 16)
    for uri in ((root / "ref.parquet").as_uri(), f"file://localhost{root / 'ref.parquet'}"):
        assert reader.read(uri)[1].digest == ref.digest


def test_no_roots_refuses_every_local_path(places: tuple[Path, Path]) -> None:
    root, _ = places
    with pytest.raises(PermissionDenied, match="DRIFT_SERVICE_DATASET_ROOTS is empty"):
        LocalDatasets().read(str(root / "ref.parquet"))


def test_traversal_out_of_the_root_is_refused(places: tuple[Path, Path]) -> None:
    root, outside = places
    uri = f"{root}/../outside/secret.parquet"
    with pytest.raises(PermissionDenied) as refused:
        resolver(root).read(uri)
    assert uri in refused.value.message
    assert "DRIFT_SERVICE_DATASET_ROOTS" in refused.value.message
    with pytest.raises(PermissionDenied, match="outside every allowed root"):
        resolver(root).read(f"{root}/../outside/does-not-exist.parquet")  # existence not revealed
    with pytest.raises(PermissionDenied):
        resolver(root).read(f"file://{root}/%2E%2E/outside/secret.parquet")  # encoded dots
    with pytest.raises(PermissionDenied):
        resolver(root).read(str(outside))  # a directory outside
    # a root's sibling with the root's name as prefix is not under it
    sibling = root.parent / f"{root.name}-evil"
    sibling.mkdir()
    FRAME.to_parquet(sibling / "x.parquet")
    with pytest.raises(PermissionDenied):
        resolver(root).read(str(sibling / "x.parquet"))


def test_symlink_escapes_are_refused(places: tuple[Path, Path]) -> None:
    root, outside = places
    os.symlink(outside / "secret.parquet", root / "link.parquet")
    with pytest.raises(PermissionDenied, match="outside every allowed root"):
        resolver(root).read(str(root / "link.parquet"))
    os.symlink(outside, root / "linked-dir")
    with pytest.raises(PermissionDenied):
        resolver(root).read(str(root / "linked-dir"))
    with pytest.raises(PermissionDenied):
        resolver(root).read(str(root / "linked-dir" / "secret.parquet"))
    # inside a dataset directory: a file linking out is refused, not silently read
    dataset = root / "dataset"
    dataset.mkdir()
    FRAME.to_parquet(dataset / "part-0.parquet")
    os.symlink(outside / "secret.parquet", dataset / "part-1.parquet")
    with pytest.raises(PermissionDenied, match=r"part-1\.parquet"):
        resolver(root).read(str(dataset))
    # a symlink that stays inside the root is followed
    os.remove(dataset / "part-1.parquet")
    os.symlink(root / "ref.parquet", dataset / "part-1.parquet")
    assert len(resolver(root).read(str(dataset))[0]) == 6


def test_schemes_and_relative_paths_are_invalid(places: tuple[Path, Path]) -> None:
    root, _ = places
    for uri, reason in (
        ("s3://bucket/ref.parquet", "scheme 's3' not accepted"),
        ("https://example.org/ref.parquet", "scheme 'https' not accepted"),
        ("file://other-host/data/ref.parquet", "another host"),
        ("ref.parquet", "relative path"),
        ("../root/ref.parquet", "relative path"),
        (f"{root}/ref\x00.parquet", "NUL character"),
        (f"file://{root}/ref%00.parquet", "NUL character"),
    ):
        with pytest.raises(InvalidArgument, match=reason) as refused:
            resolver(root).read(uri)
        assert refused.value.field == "dataset_uri"


def test_a_directory_is_read_within_depth_and_count(places: tuple[Path, Path]) -> None:
    root, _ = places
    dataset = root / "partitioned"
    for month in (1, 2):
        part = dataset / "year=2026" / f"month={month}"
        part.mkdir(parents=True)
        FRAME.to_parquet(part / "part-0.parquet")
    (dataset / "_SUCCESS").write_text("")
    frame, ref = resolver(root, max_depth=2).read(str(dataset))
    assert len(frame) == 6
    assert sorted(frame["month"].astype(int).unique()) == [1, 2]  # hive partitions kept
    assert ref.digest
    with pytest.raises(InvalidArgument, match=r"deeper than DRIFT_SERVICE_DATASET_MAX_DEPTH=1"):
        resolver(root, max_depth=1).read(str(dataset))
    with pytest.raises(InvalidArgument, match=r"more than DRIFT_SERVICE_DATASET_MAX_FILES=1 Parquet"):
        resolver(root, max_depth=2, max_files=1).read(str(dataset))
    empty = root / "empty"
    empty.mkdir()
    with pytest.raises(NotFound) as none:
        resolver(root).read(str(empty))
    assert none.value.description == "a directory without Parquet files"
    with pytest.raises(NotFound) as missing:
        resolver(root).read(str(root / "missing.parquet"))
    assert missing.value.description == "no such file or directory"


def test_too_many_files_are_refused_without_reading_them_all(places: tuple[Path, Path]) -> None:
    root, _ = places
    many = root / "many"
    many.mkdir()
    for i in range(25):
        FRAME.to_parquet(many / f"part-{i:02d}.parquet")
    with pytest.raises(InvalidArgument, match="more than DRIFT_SERVICE_DATASET_MAX_FILES=20"):
        resolver(root, max_files=20).read(str(many))
    assert len(resolver(root, max_files=25).read(str(many))[0]) == 75
    clutter = root / "clutter"
    clutter.mkdir()
    for i in range(30):
        (clutter / f"note-{i}.txt").write_text("")
    FRAME.to_parquet(clutter / "zz.parquet")
    with pytest.raises(InvalidArgument, match="more than 20 entries"):
        resolver(root, max_files=2).read(str(clutter))  # 10 entries per allowed file at most


def test_a_changed_file_is_read_again(places: tuple[Path, Path]) -> None:
    root, _ = places
    reader = resolver(root)
    first = reader.read(str(root / "ref.parquet"))
    assert reader.read(str(root / "ref.parquet"))[0] is first[0]  # cached
    FRAME.head(2).to_parquet(root / "ref.parquet")
    assert len(reader.read(str(root / "ref.parquet"))[0]) == 2


def test_settings_name_the_roots() -> None:
    settings = DriftServiceSettings(dataset_roots=["/data/ref"], dataset_max_depth=0, dataset_max_files=5)
    assert settings.dataset_limits == DatasetLimits((Path("/data/ref"),), 0, 5)
    assert DriftServiceSettings().dataset_limits.roots == ()
    with pytest.raises(ValidationError, match="absolute paths only"):
        DriftServiceSettings(dataset_roots=["data/ref"])
