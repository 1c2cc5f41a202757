"""A model version's artifacts: read-only download from the MLflow registry and sha256 checks.

The registry-gateway (the registry's only writer) records one version tag per artifact file:

* ``registry.sha256.model/<file>`` for every file of the registered model's folder (the version's
  ``source``; a ``models:/m-...`` source resolves to the logged model's artifact location);
* ``registry.sha256.fast_scorer/<file>`` for every file of the run's ``fast_scorer`` folder.

Before anything is loaded, every downloaded file must have a digest tag with the same sha256 and
every digest tag must name a downloaded file. A version without digest tags, or with one
mismatch, is refused (:class:`ArtifactRefused`).
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAST_SCORER_DIR = "fast_scorer"
DIGEST_TAG_PREFIX = "registry.sha256."


class ArtifactRefused(Exception):
    """A version's artifacts cannot be trusted (missing or mismatching digests, bad content)."""

    def __init__(self, version: str, reason: str) -> None:
        super().__init__(f"version {version} refused: {reason}")
        self.version = version
        self.reason = reason


def sha256_tree(root: Path, prefix: str) -> dict[str, str]:
    """``{prefix/relative path: sha256 hex}`` of every file under ``root`` (as the gateway computes)."""
    out: dict[str, str] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        out[f"{prefix}/{path.relative_to(root).as_posix()}"] = digest.hexdigest()
    return out


def digests_from_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The recorded digests ``{model/MLmodel: hex, ...}`` of a version's tags."""
    return {k[len(DIGEST_TAG_PREFIX) :]: v for k, v in tags.items() if k.startswith(DIGEST_TAG_PREFIX)}


def verify_digests(version: str, recorded: Mapping[str, str], actual: Mapping[str, str]) -> None:
    """Compare the recorded digests with the downloaded files'.

    Raises:
        ArtifactRefused: no digest tags, a file without a tag, a tag without a file, a mismatch.
    """
    if not recorded:
        raise ArtifactRefused(
            version, "no registry.sha256.* digest tags (not registered through the gateway)"
        )
    untagged = sorted(set(actual) - set(recorded))
    if untagged:
        raise ArtifactRefused(version, f"no digest tag for {untagged[0]} ({len(untagged)} file(s))")
    absent = sorted(set(recorded) - set(actual))
    if absent:
        raise ArtifactRefused(version, f"digest tag for a file not in the artifacts: {absent[0]}")
    for key in sorted(recorded):
        if recorded[key].lower() != actual[key]:
            raise ArtifactRefused(version, f"sha256 mismatch for {key}")


@dataclass(frozen=True)
class VersionArtifacts:
    """A downloaded and verified version.

    Attributes:
        name / version / run_id: the model version.
        model_dir: the registered model's folder (``MLmodel``, ``model.skops`` ...).
        scorer_dir: the run's ``fast_scorer`` folder.
        digests: the verified digests.
        root: the folder holding both (removed by :meth:`remove`).
    """

    name: str
    version: str
    run_id: str
    model_dir: Path
    scorer_dir: Path
    digests: dict[str, str]
    root: Path

    def remove(self) -> None:
        """Delete the downloaded files."""
        shutil.rmtree(self.root, ignore_errors=True)


def _download(uri: str, dst: Path, tracking_uri: str) -> Path:
    import mlflow.artifacts

    dst.mkdir(parents=True, exist_ok=True)
    return Path(
        mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst), tracking_uri=tracking_uri)
    )


def fetch_version(client: Any, tracking_uri: str, name: str, mv: Any, cache_dir: Path) -> VersionArtifacts:
    """Download a model version's artifacts (read-only calls only) and verify their digests.

    Args:
        client: an ``MlflowClient`` of the tracking server.
        tracking_uri: its URI.
        name: registered model name.
        mv: the ``ModelVersion`` (from ``get_model_version_by_alias``).
        cache_dir: parent of the download folder.

    Raises:
        ArtifactRefused: digests missing or mismatching, no fast scorer.
        mlflow.exceptions.MlflowException: the server failed or refused.
    """
    version = str(mv.version)
    root = cache_dir / f"{name}-v{version}-{uuid.uuid4().hex[:8]}"
    try:
        source = str(mv.source or "")
        if source.startswith("models:/m-"):
            source = str(client.get_logged_model(source.removeprefix("models:/")).artifact_location)
        model_dir = _download(source, root / "model", tracking_uri)
        if not mv.run_id:
            raise ArtifactRefused(version, "the version names no run (no fast scorer to load)")
        run = client.get_run(mv.run_id)
        scorer_dir = _download(f"{run.info.artifact_uri}/{FAST_SCORER_DIR}", root / "scorer", tracking_uri)
        actual = {**sha256_tree(model_dir, "model"), **sha256_tree(scorer_dir, FAST_SCORER_DIR)}
        verify_digests(version, digests_from_tags(dict(mv.tags or {})), actual)
        return VersionArtifacts(name, version, str(mv.run_id), model_dir, scorer_dir, actual, root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
