"""sha256 digests of a model version's artifact files and the version tags that record them.

Digest keys (``artifact_digests`` of the registry contract; the version tags
``registry.sha256.<key>``):

* ``model/<file>`` for every file of the registered model's artifact folder (the version's
  ``source``: ``MLmodel``, ``model.skops``, ``conda.yaml``, ``requirements.txt`` ...);
* ``fast_scorer/<file>`` for every file of the run's ``fast_scorer`` artifact folder
  (``model.onnx``, ``scorer.json``, ``onnx_scorer.py``) when the run logged one.

The registry-gateway (the registry's only writer) computes and records them; the model-server and
the gate verify downloaded files against them before loading anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

MODEL_DIR = "model"
"""Key prefix of the registered model's files (and the model's artifact path in its run)."""
FAST_SCORER_DIR = "fast_scorer"
"""Key prefix of the fast scorer's files (and their artifact folder in the run)."""
DIGEST_TAG_PREFIX = "registry.sha256."
"""Version tag prefix of a recorded digest: ``registry.sha256.model/MLmodel``."""
_BLOCK = 1 << 20


class DigestMismatch(ValueError):
    """Recorded digests and downloaded files disagree.

    Attributes:
        reason: what disagrees (no tags, a file without a tag, a tag without a file, a mismatch).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sha256_file(path: Path) -> str:
    """The sha256 (lower-case hex) of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(root: Path, prefix: str) -> dict[str, str]:
    """``{prefix/relative posix path: sha256 hex}`` of every file under ``root``, sorted by key.

    Folders contribute no key of their own; an empty or missing ``root`` gives ``{}``.

    Raises:
        DigestMismatch: an entry that is neither a regular file nor a folder (a symbolic link,
            dangling or not, a FIFO, a socket): artifacts are plain files, and a link would make
            the digest and what is loaded two different things. The entry is named.
    """
    files = []
    for path in root.rglob("*"):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            kind = "symbolic link" if path.is_symlink() else "special file"
            raise DigestMismatch(f"a {kind} in the artifacts: {prefix}/{path.relative_to(root).as_posix()}")
        if path.is_file():
            files.append(path)
    files.sort()
    return {f"{prefix}/{path.relative_to(root).as_posix()}": sha256_file(path) for path in files}


def digest_tags(digests: Mapping[str, str]) -> dict[str, str]:
    """The version tags recording ``digests`` (``{"registry.sha256.<key>": hex}``)."""
    return {f"{DIGEST_TAG_PREFIX}{key}": value for key, value in digests.items()}


def digests_from_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The recorded digests ``{"model/MLmodel": hex, ...}`` among a version's tags (others ignored)."""
    return {k[len(DIGEST_TAG_PREFIX) :]: v for k, v in tags.items() if k.startswith(DIGEST_TAG_PREFIX)}


def verify_digests(recorded: Mapping[str, str], actual: Mapping[str, str]) -> None:
    """Check downloaded files (``actual``, from :func:`sha256_tree`) against the recorded digests.

    Every downloaded file must have a recorded digest with the same sha256 (hex compared without
    regard to case) and every recorded digest must name a downloaded file.

    Raises:
        DigestMismatch: no recorded digest at all, a file without one, one without a file, or a
            different sha256 (the first key in sorted order is named).
    """
    if not recorded:
        raise DigestMismatch(f"no {DIGEST_TAG_PREFIX}* digest tags (not registered through the gateway)")
    untagged = sorted(set(actual) - set(recorded))
    if untagged:
        raise DigestMismatch(f"no digest tag for {untagged[0]} ({len(untagged)} file(s))")
    absent = sorted(set(recorded) - set(actual))
    if absent:
        raise DigestMismatch(f"digest tag for a file not in the artifacts: {absent[0]}")
    for key in sorted(recorded):
        if recorded[key].lower() != actual[key]:
            raise DigestMismatch(f"sha256 mismatch for {key}")
