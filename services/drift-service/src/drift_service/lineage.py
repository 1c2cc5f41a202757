"""The check of a model version's training rows against the digest its registration recorded.

The registry-gateway downloads a run's training rows (``training_set/training_rows.parquet``) when
it registers a version, keeps the sha256 of their bytes with the version, and answers it as the
lineage's training dataset digest, ``sha256:<64 hex>`` (also the version tag
``registry.dataset.sha256``, which only registry writers can set). The run's own artifact can still
be overwritten afterwards by the run's MLflow writer (the training-service), so the drift-service
verifies the bytes it downloads against that sha256 before it uses them as a reference: a mismatch
refuses the reference (FAILED_PRECONDITION, logged as a WARNING) and no report is computed on those
rows. A version registered without it (a run without training rows, or a registration before the
gateway kept the sha256) has MLflow's dataset digest there (``mlflow.data``: a hash of a sample of
the frame's values, 8 hex digits for pandas), which is not a file hash: recorded, not verified.
"""

from __future__ import annotations

import logging
import re

from creditrisk_kit import FailedPrecondition, PreconditionViolation

_LOG = logging.getLogger("drift_service")

#: A digest checkable against the downloaded file: a sha256 of its bytes (``<64 hex>`` or
#: ``sha256:<64 hex>``, any case).
FILE_SHA256 = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")
#: The version tag the registry-gateway writes with the training rows' sha256 (``sha256:<64 hex>``).
TRAINING_ROWS_SHA256_TAG = "registry.dataset.sha256"


def check_lineage_digest(
    expected: str, sha256: str, mlflow_digest: str, *, artifact: str, source: str
) -> str:
    """Check the lineage's training-dataset digest against the downloaded rows where comparable.

    Args:
        expected: the lineage's digest (``sha256:<64 hex>`` from the registry-gateway, or MLflow's
            dataset digest for a version registered without training rows).
        sha256: the sha256 (64 lower-case hex digits) of the downloaded bytes.
        mlflow_digest: the run's own dataset input digest as MLflow recorded it ("" when none).
        artifact: the downloaded artifact (``runs:/<run id>/<path>``), named in errors and logs.
        source: the reference's model version (``models:/<name>/<version>``), named likewise.

    Returns:
        The digest the report's reference records: ``sha256:<64 hex>`` of the verified bytes, or
        ``expected`` unchanged when it is not a file sha256 (recorded, not verified; a difference
        from ``mlflow_digest`` is logged as a WARNING).

    Raises:
        FailedPrecondition: ``expected`` is a file sha256 and the downloaded bytes have another one
            (violation ``REFERENCE_DIGEST_MISMATCH`` naming the version; the message names the
            version, the artifact and both digests). Logged as a WARNING before it is raised.
    """
    match = FILE_SHA256.match(expected.strip().lower())
    if match is None:
        if mlflow_digest and mlflow_digest != expected:
            _LOG.warning(
                "reference %s: the lineage's dataset digest %s differs from the run's dataset input "
                "digest %s",
                source,
                expected,
                mlflow_digest,
            )
        else:
            _LOG.info(
                "reference %s: the lineage's dataset digest %s is MLflow's dataset digest, not a file "
                "hash; recorded, not verified against the downloaded file",
                source,
                expected,
            )
        return expected
    registered, downloaded = f"sha256:{match.group(1)}", f"sha256:{sha256}"
    if match.group(1) != sha256:
        _LOG.warning(
            "reference %s refused: the training rows %s have %s, the registered lineage records %s",
            source,
            artifact,
            downloaded,
            registered,
            extra={
                "drift.reference": source,
                "drift.reference_artifact": artifact,
                "drift.reference_sha256": downloaded,
                "drift.lineage_sha256": registered,
            },
        )
        raise FailedPrecondition(
            f"the training rows {artifact} of {source} do not match the sha256 its registration "
            f"recorded: registered {registered}, downloaded {downloaded}; the run's artifact was "
            "changed after registration, so it is not used as the drift reference",
            [
                PreconditionViolation(
                    type="REFERENCE_DIGEST_MISMATCH",
                    subject=source,
                    description=f"registered {registered}, downloaded {downloaded}",
                )
            ],
        )
    _LOG.info("reference %s: the training rows match the registered %s", source, registered)
    return registered


def check_single_file(expected: str, is_file: bool, *, artifact: str, source: str) -> None:
    """Refuse a downloaded reference that is a folder where the registration hashed one file.

    The registry-gateway records the sha256 of ``training_set/training_rows.parquet`` as one file.
    A run's writer can later replace it by a folder of the same name holding the registered file
    next to others (pandas reads every file of a dataset folder), so a folder is refused before
    it is read, whatever its digest.

    Args:
        expected: the lineage's digest; only a file sha256 (:data:`FILE_SHA256`) is checked.
        is_file: whether the download is a single regular file.
        artifact / source: named in the error and the log, as :func:`check_lineage_digest`.

    Raises:
        FailedPrecondition: violation ``REFERENCE_DIGEST_MISMATCH`` (the artifact is not the file
            registered), logged as a WARNING before it is raised.
    """
    match = FILE_SHA256.match(expected.strip().lower())
    if match is None or is_file:
        return
    registered = f"sha256:{match.group(1)}"
    _LOG.warning(
        "reference %s refused: the training rows %s are a folder, the registration hashed one file (%s)",
        source,
        artifact,
        registered,
        extra={
            "drift.reference": source,
            "drift.reference_artifact": artifact,
            "drift.lineage_sha256": registered,
        },
    )
    raise FailedPrecondition(
        f"the training rows {artifact} of {source} are a folder, while its registration recorded the "
        f"sha256 of one file ({registered}); the run's artifact was changed after registration, so "
        "it is not used as the drift reference",
        [
            PreconditionViolation(
                type="REFERENCE_DIGEST_MISMATCH",
                subject=source,
                description=f"registered one file {registered}, downloaded a folder",
            )
        ],
    )
