"""A model version's artifacts: read-only download from the MLflow registry and sha256 checks.

The registry-gateway (the registry's only writer) records one version tag per artifact file:

* ``registry.sha256.model/<file>`` for every file of the registered model's folder (the version's
  ``source``; a ``models:/m-...`` source resolves to the logged model's artifact location);
* ``registry.sha256.fast_scorer/<file>`` for every file of the run's ``fast_scorer`` folder.

Before anything is loaded, every downloaded file must have a digest tag with the same sha256 and
every digest tag must name a downloaded file. A version without digest tags, or with one
mismatch, is refused (:class:`ArtifactRefused`); the digests and their check are
:mod:`creditrisk_model_artifacts.digests`.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from creditrisk_model_artifacts import (
    FAST_SCORER_DIR,
    MODEL_DIR,
    DigestMismatch,
    digests_from_tags,
    sha256_tree,
    verify_digests,
)
from creditrisk_model_artifacts.signing import Approval, ApprovalRefused, verify_approved_digests


class ArtifactRefused(Exception):
    """A version's artifacts cannot be trusted (missing or mismatching digests, bad content).

    Attributes:
        code: a short label for the refusal metric (``artifacts``, or an approval refusal's reason:
            ``unsigned``, ``bad_signature``, ``downgrade``, ``digests`` ...).
    """

    def __init__(self, version: str, reason: str, code: str = "artifacts") -> None:
        super().__init__(f"version {version} refused: {reason}")
        self.version = version
        self.reason = reason
        self.code = code


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


def fetch_version(
    client: Any, tracking_uri: str, name: str, mv: Any, cache_dir: Path, approval: Approval | None = None
) -> VersionArtifacts:
    """Download a model version's artifacts (read-only calls only) and verify their digests: the
    signed ones of ``approval`` when given (the version's tags otherwise).

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
        try:
            actual = {**sha256_tree(model_dir, MODEL_DIR), **sha256_tree(scorer_dir, FAST_SCORER_DIR)}
            if approval is not None:
                verify_approved_digests(approval, actual)
            else:
                verify_digests(digests_from_tags(dict(mv.tags or {})), actual)
        except DigestMismatch as exc:
            raise ArtifactRefused(version, exc.reason) from exc
        except ApprovalRefused as exc:
            raise ArtifactRefused(version, str(exc), exc.reason) from exc
        return VersionArtifacts(name, version, str(mv.run_id), model_dir, scorer_dir, actual, root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
