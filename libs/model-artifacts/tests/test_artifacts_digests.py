"""Digests of a known tree, their tags, and the check of downloaded files against them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from creditrisk_model_artifacts import (
    DigestMismatch,
    digest_tags,
    digests_from_tags,
    sha256_tree,
    verify_digests,
)

# FIPS 180-2 test vectors: sha256("abc") and sha256("").
SHA256_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
SHA256_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "MLmodel").write_bytes(b"abc")
    (root / "sub" / "empty.txt").write_bytes(b"")
    big = bytes(range(256)) * 8192  # 2 MiB: read in more than one block
    (root / "sub" / "deeper" / "model.skops").write_bytes(big)
    (root / "empty-folder").mkdir()
    return root


def test_digest_of_a_known_tree(tree: Path) -> None:
    big = hashlib.sha256(bytes(range(256)) * 8192).hexdigest()
    digests = sha256_tree(tree, "model")
    assert digests == {
        "model/MLmodel": SHA256_ABC,
        "model/sub/deeper/model.skops": big,
        "model/sub/empty.txt": SHA256_EMPTY,
    }
    assert list(digests) == sorted(digests)
    assert sha256_tree(tree / "absent", "model") == {}


def test_tags_round_trip_and_other_tags_are_ignored(tree: Path) -> None:
    digests = sha256_tree(tree, "fast_scorer")
    tags = digest_tags(digests)
    assert tags["registry.sha256.fast_scorer/MLmodel"] == SHA256_ABC
    assert digests_from_tags({**tags, "registry.gate": "passed", "owner": "risk"}) == digests


def test_verify_accepts_matching_digests_in_any_case(tree: Path) -> None:
    actual = sha256_tree(tree, "model")
    verify_digests({k: v.upper() for k, v in actual.items()}, actual)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda rec: {}, "no registry.sha256.* digest tags"),
        (
            lambda rec: {k: v for k, v in rec.items() if k != "model/MLmodel"},
            "no digest tag for model/MLmodel",
        ),
        (lambda rec: {**rec, "model/extra.bin": SHA256_EMPTY}, "not in the artifacts: model/extra.bin"),
        (lambda rec: {**rec, "model/sub/empty.txt": SHA256_ABC}, "sha256 mismatch for model/sub/empty.txt"),
    ],
    ids=["no-tags", "untagged-file", "tag-without-file", "mismatch"],
)
def test_verify_refuses(tree: Path, change, reason: str) -> None:
    actual = sha256_tree(tree, "model")
    with pytest.raises(DigestMismatch, match=reason.replace("*", r"\*")) as info:
        verify_digests(change(dict(actual)), actual)
    assert isinstance(info.value, ValueError)


def test_a_changed_byte_changes_the_digest(tree: Path) -> None:
    recorded = sha256_tree(tree, "model")
    (tree / "MLmodel").write_bytes(b"abd")
    with pytest.raises(DigestMismatch, match="sha256 mismatch for model/MLmodel"):
        verify_digests(recorded, sha256_tree(tree, "model"))


@pytest.mark.parametrize("target", ["outside", "dangling", "folder"])
def test_a_symbolic_link_in_the_artifacts_is_refused_by_name(tmp_path: Path, target: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside the tree\n")
    tree = tmp_path / "model"
    tree.mkdir()
    (tree / "MLmodel").write_text("flavors: {}\n")
    link = {"outside": outside / "secret.txt", "dangling": tmp_path / "nothing", "folder": outside}[target]
    os.symlink(link, tree / "model.skops")
    with pytest.raises(DigestMismatch, match=r"symbolic link in the artifacts: model/model\.skops"):
        sha256_tree(tree, "model")
