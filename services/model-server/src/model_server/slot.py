"""The core of one alias slot: follow ``<model>@<alias>`` in the MLflow registry, load + verify +
warm each new version beside the old one, swap atomically, score.

Both runtimes (:mod:`model_server.seldon_model`, :mod:`model_server.mlserver_runtime`) are thin
transports over one :class:`Slot` per serving process.

Following the alias: the registry-gateway's ``WatchAliases`` stream needs our gRPC contracts, which
this environment cannot import (protobuf 5.29), so a daemon thread polls
``MlflowClient.get_model_version_by_alias`` every ``poll_interval_s`` (read-only calls only). On a
move it first verifies the registry-gateway's signed approval of the move
(:mod:`model_server.approvals`: signature, name/version/alias, sequence, revocation) before a byte is
downloaded, then downloads the version, verifies every file against the signed digests
(:mod:`model_server.artifacts`), loads the ONNX fast scorer and the scikit-learn reference, checks
they agree on the input example within the recorded tolerance, warms the serving path, and only
then replaces the reference to the current :class:`LoadedModel` (one assignment: atomic). A request
takes that reference once at its start, so in-flight requests finish on the version they started
with, and every response names the version that scored it. A refused version (approval, digests, content)
is logged (WARNING, ``event=version_refused``: the slot's audit record, it has no audit store of its
own), counted (``model_server_refused_versions_total{alias,reason}``) and shown in the state file;
the old version keeps serving; the refused one is checked again after ``refused_retry_s``, or at
once when its approval tag changes. A served version that gets revoked stops serving (503).

Logs of the alias reads change with the state, not with every poll: before the first promotion the
model or its alias does not exist yet, a normal waiting state logged once at INFO (``waiting for
alias champion of model credit-risk to exist``) and left with ``alias ... exists: version N``; an
alias removed while a version serves is one WARNING; a read that fails (registry unreachable,
server errors) is a WARNING when it starts failing, repeated at most every
:data:`READ_ERROR_LOG_INTERVAL_S` with the count of failed reads, and an INFO when it recovers.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from creditrisk_model_artifacts.signing import Approval, ApprovalRefused, approval_tag

from model_server import readiness
from model_server.approvals import Approvals, RefusalCounts
from model_server.artifacts import ArtifactRefused, VersionArtifacts, fetch_version
from model_server.scorers import OnnxScorer, ReferenceScorer, Scorer
from model_server.settings import Settings
from model_server.signature import Column, columns_from_records, read_signature

LOGGER = logging.getLogger("model_server.slot")
REJECT = "reject"
APPROVE = "approve"


def preload_modules() -> None:
    """Import what loading a version needs (MLflow client and artifacts, skops, onnxruntime,
    scikit-learn's pipeline modules) so that a forked worker inherits them.

    onnxruntime only with its telemetry off (the package's default, :mod:`model_server`): with it
    on, the import starts an uploader thread that a forked worker inherits without the thread,
    and the worker dies in a C++ destructor at exit. Then each worker imports it itself.
    """
    import mlflow.artifacts
    import mlflow.models  # noqa: F401
    import pandas  # noqa: F401
    import sklearn.compose
    import sklearn.ensemble
    import sklearn.linear_model
    import sklearn.pipeline  # noqa: F401
    import skops.io  # noqa: F401
    from mlflow import MlflowClient  # noqa: F401

    if os.environ.get("ORT_DISABLE_TELEMETRY", "").strip() == "1":
        import onnxruntime  # noqa: F401


#: While reading the alias fails (registry unreachable, server errors), the warning is logged when it
#: starts failing and then at most once per this many seconds, with the count of failed reads.
READ_ERROR_LOG_INTERVAL_S = 300.0
#: At exit, how long to wait for the alias follower to finish a read or load in progress.
EXIT_JOIN_S = 5.0


def alias_missing(exc: BaseException) -> bool:
    """Whether a failed ``get_model_version_by_alias`` says the model or its alias does not exist
    (yet): MLflow answers ``RESOURCE_DOES_NOT_EXIST`` for an unregistered model and
    ``INVALID_PARAMETER_VALUE`` "Registered model alias <alias> not found." for a model without it."""
    code = getattr(exc, "error_code", None)
    if code == "RESOURCE_DOES_NOT_EXIST":
        return True
    text = str(exc)
    return code == "INVALID_PARAMETER_VALUE" and "alias" in text and "not found" in text


class NoModel(Exception):
    """The slot holds no model yet (HTTP 503, gRPC UNAVAILABLE)."""

    http_status = 503
    grpc_status = "UNAVAILABLE"


@dataclass
class LoadedModel:
    """A verified, loaded and warmed model version.

    Attributes:
        name / version / run_id: the model version (version as a string, e.g. ``"3"``).
        columns: the signature's input columns.
        threshold: the decision threshold from the model metadata (reject when P(default) >= it).
        fast / reference: the two scoring paths; ``serving`` is the one that answers requests.
        artifacts: the downloaded files.
        fidelity: max |fast - reference| on the warm-up rows.
    """

    name: str
    version: str
    run_id: str
    columns: list[Column]
    threshold: float
    fast: OnnxScorer
    reference: ReferenceScorer
    serving: Scorer
    artifacts: VersionArtifacts
    fidelity: float
    approval: Approval | None = None
    loaded_at: float = field(default_factory=time.time)

    @property
    def signature(self) -> dict[str, str]:
        return {c.name: c.kind for c in self.columns}


@dataclass(frozen=True)
class Scored:
    """Scores of one request and the version that produced them."""

    name: str
    version: str
    alias: str
    threshold: float
    scorer: str
    probabilities: np.ndarray
    decisions: list[str]


def _warmup_records(model_dir: Any, columns: list[Column]) -> list[dict[str, Any]]:
    """The logged input example's rows (pandas ``split`` orient) plus an all-missing row."""
    records: list[dict[str, Any]] = [{}]
    path = model_dir / "input_example.json"
    try:
        example = json.loads(path.read_text())
        names = example["columns"]
        for row in example["data"]:
            records.append({n: v for n, v in zip(names, row, strict=True) if v is not None})
    except (OSError, ValueError, KeyError, TypeError):
        LOGGER.warning("no usable input example; warming up on an all-missing row only")
    return records


def load_version(settings: Settings, client: Any, mv: Any, approval: Approval | None = None) -> LoadedModel:
    """Download, verify, load, check and warm one version (blocking; does not touch the slot).

    With ``approval`` (verified by :meth:`model_server.approvals.Approvals.check`), the downloaded
    files must match its signed digests; without, the version's digest tags.

    Raises:
        ArtifactRefused: digests, missing threshold, scorer content, fast/reference disagreement.
        mlflow.exceptions.MlflowException / OSError: registry or download failures (retried by the poller).
    """
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    artifacts = fetch_version(
        client, settings.mlflow_tracking_uri, settings.model_name, mv, settings.cache_dir, approval
    )
    version = artifacts.version
    try:
        try:
            columns, metadata, flavor = read_signature(artifacts.model_dir)
            if "decision_threshold" not in metadata:
                raise ValueError("no decision_threshold in the model metadata")
            threshold = float(metadata["decision_threshold"])
            signature = {c.name: c.kind for c in columns}
            fast = OnnxScorer(artifacts.scorer_dir, signature)
            reference = ReferenceScorer(artifacts.model_dir, flavor)
        except (ValueError, KeyError, OSError) as exc:
            raise ArtifactRefused(version, str(exc)) from exc
        records = _warmup_records(artifacts.model_dir, columns)
        typed = columns_from_records(records, columns, "input_example")
        n = len(records)
        fidelity = float(np.max(np.abs(fast.predict_default(typed, n) - reference.predict_default(typed, n))))
        tolerance = float(fast.meta.get("tolerance", 1e-6))
        if not fidelity <= tolerance:
            raise ArtifactRefused(
                version, f"fast scorer differs from the reference by {fidelity:g} > {tolerance:g}"
            )
        serving: Scorer = fast if settings.scorer == "fast" else reference
        one = {name: values[-1:] for name, values in typed.items()}
        for _ in range(settings.warmup_rows):  # the first calls allocate (docs/benchmarks.md)
            serving.predict_default(one, 1)
        return LoadedModel(
            name=settings.model_name,
            version=version,
            run_id=artifacts.run_id,
            columns=columns,
            threshold=threshold,
            fast=fast,
            reference=reference,
            serving=serving,
            artifacts=artifacts,
            fidelity=fidelity,
            approval=approval,
        )
    except BaseException:
        artifacts.remove()
        raise


class Slot:
    """One serving process's view of the slot ``<model_name>@<alias>`` (see the module docstring).

    Args:
        settings: the slot's settings.
        client: an ``MlflowClient`` (built from the settings when None).
        role: what this process serves (``rest``, ``grpc``, ``mlserver``), written to its state file.
    """

    def __init__(self, settings: Settings, client: Any = None, role: str = "serving") -> None:
        self.settings = settings
        self.role = role
        self._client = client
        self._current: LoadedModel | None = None
        self._target: str | None = None
        self._refused: dict[str, tuple[str, float, str]] = {}  # version -> (reason, when, approval tag)
        self.approvals: Approvals | None = None
        if settings.require_approval and settings.trusted_keys_file is not None:
            self.approvals = Approvals(
                settings.model_name, settings.alias, settings.trusted_keys_file, settings.approval_state_path
            )
        self.refusal_counts = RefusalCounts(settings.alias)
        self._lock = threading.Lock()  # one load at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.loads = 0
        self.refusals = 0
        self.last_error = ""
        # what the last alias read found, for logging changes only: "" (no read yet), "found",
        # "missing" (no such model or alias: waiting) or "failing" (the read itself failed)
        self._read_state = ""
        self._read_failures = 0
        self._read_failing_since = 0.0
        self._read_logged_at = 0.0

    # --- registry ------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(
                tracking_uri=self.settings.mlflow_tracking_uri, registry_uri=self.settings.mlflow_tracking_uri
            )
        return self._client

    @property
    def current(self) -> LoadedModel | None:
        """The version serving now (None before the first load)."""
        return self._current

    def poll_once(self) -> str:
        """Read the alias once and follow it. Returns what happened: ``same``, ``swapped``,
        ``refused``, ``skipped`` (refused recently), ``no-alias`` or ``error``."""
        with self._lock:
            name, alias = self.settings.model_name, self.settings.alias
            try:
                mv = self.client.get_model_version_by_alias(name, alias)
            except Exception as exc:
                self.last_error = f"reading {name}@{alias}: {exc}"
                missing = alias_missing(exc)
                self._log_read_failure(exc, missing)
                self._publish()
                return "no-alias" if missing else "error"
            version = str(mv.version)
            self._log_read_ok(version)
            self._target = version
            if self._drop_revoked():
                self._publish()
            if self._current is not None and self._current.version == version:
                self._publish()
                return "same"
            tag = str(dict(getattr(mv, "tags", None) or {}).get(approval_tag(alias), ""))
            refused = self._refused.get(version)
            if refused and refused[2] == tag and time.time() - refused[1] < self.settings.refused_retry_s:
                return "skipped"
            try:
                started = time.perf_counter()
                approval = None
                if self.approvals is not None:
                    try:
                        approval = self.approvals.check(mv, self._served())
                    except ApprovalRefused as exc:
                        raise ArtifactRefused(version, str(exc), exc.reason) from exc
                new = load_version(self.settings, self.client, mv, approval)
            except ArtifactRefused as exc:
                self._refuse(version, exc, tag)
                return "refused"
            except Exception as exc:
                self.last_error = f"loading version {version}: {exc}"
                LOGGER.exception(
                    "loading %s version %s failed; keeping version %s", name, version, self._version()
                )
                self._publish()
                return "error"
            if self.approvals is not None and new.approval is not None:
                self.approvals.record_served(new.approval)  # before it serves: no downgrade after a restart
            old, self._current = self._current, new  # the swap: one reference assignment
            self._refused.pop(version, None)
            self.loads += 1
            self.last_error = ""
            LOGGER.info(
                "serving %s version %s (%s@%s, was %s; loaded, verified and warmed in %.2f s, fidelity %.2g)",
                name,
                version,
                name,
                alias,
                old.version if old else None,
                time.perf_counter() - started,
                new.fidelity,
                extra={"model": name, "version": version, "alias": alias},
            )
            self._publish()
            if old is not None:
                # in-flight requests keep their reference to `old`; its files are no longer needed
                old.artifacts.remove()
            return "swapped"

    def _version(self) -> str | None:
        return self._current.version if self._current else None

    def _served(self) -> tuple[str, int] | None:
        current = self._current
        if current is None or current.approval is None:
            return None
        return current.version, current.approval.sequence

    def _refuse(self, version: str, exc: ArtifactRefused, tag: str) -> None:
        """Report a refused version (log = the audit record, counter, state); keep the current one."""
        name, alias = self.settings.model_name, self.settings.alias
        self.refusals += 1
        self.refusal_counts.add(exc.code)
        self._refused[version] = (exc.reason, time.time(), tag)
        self.last_error = str(exc)
        LOGGER.warning(
            "refused to load %s version %s; keeping version %s: %s",
            name,
            version,
            self._version(),
            exc.reason,
            extra={
                "event": "version_refused",
                "model": name,
                "version": version,
                "alias": alias,
                "reason": exc.reason,
                "refusal": exc.code,
                "serving_version": self._version(),
            },
        )
        self._publish()

    def _drop_revoked(self) -> bool:
        """Stop serving the current version when the verified revocation list names it."""
        current = self._current
        if self.approvals is None:
            return False
        revoked = self.approvals.refresh_revocations(self.client)
        if current is None or current.version not in revoked:
            return False
        self._current = None
        self._refuse(
            current.version,
            ArtifactRefused(current.version, f"version {current.version} was revoked", "revoked"),
            "",
        )
        LOGGER.warning(
            "stopped serving revoked version %s of %s@%s",
            current.version,
            self.settings.model_name,
            self.settings.alias,
            extra={"event": "version_revoked", "version": current.version, "alias": self.settings.alias},
        )
        current.artifacts.remove()
        return True

    def _log_read_failure(self, exc: Exception, missing: bool) -> None:
        """Log a failed alias read on a change of state only (see :data:`READ_ERROR_LOG_INTERVAL_S`)."""
        name, alias = self.settings.model_name, self.settings.alias
        extra = {
            "model": name,
            "alias": alias,
            "pid": os.getpid(),
            ("reason" if missing else "error"): str(exc),
        }
        if missing:
            if self._read_state != "missing":
                if self._current is None:  # before the first promotion: the normal waiting state
                    LOGGER.info("waiting for alias %s of model %s to exist", alias, name, extra=extra)
                else:
                    LOGGER.warning(
                        "alias %s of model %s no longer exists; keeping version %s",
                        alias,
                        name,
                        self._version(),
                        extra=extra,
                    )
            self._read_state = "missing"
            self._read_failures = 0
            return
        self._read_failures += 1
        now = time.monotonic()
        if self._read_state != "failing":
            self._read_state, self._read_failing_since, self._read_logged_at = "failing", time.time(), now
            LOGGER.warning(
                "cannot read alias %s of model %s; keeping version %s: %s",
                alias,
                name,
                self._version(),
                exc,
                extra=extra,
            )
        elif now - self._read_logged_at >= READ_ERROR_LOG_INTERVAL_S:
            self._read_logged_at = now
            LOGGER.warning(
                "still cannot read alias %s of model %s (%d failed reads in %.0f s); keeping version %s: %s",
                alias,
                name,
                self._read_failures,
                time.time() - self._read_failing_since,
                self._version(),
                exc,
                extra={**extra, "failed_reads": self._read_failures},
            )

    def _log_read_ok(self, version: str) -> None:
        """Log the end of a waiting or failing state (the alias read answered ``version``)."""
        name, alias = self.settings.model_name, self.settings.alias
        extra = {"model": name, "alias": alias, "pid": os.getpid(), "version": version}
        if self._read_state == "missing":
            LOGGER.info("alias %s of model %s exists: version %s", alias, name, version, extra=extra)
        elif self._read_state == "failing":
            LOGGER.info(
                "alias %s of model %s readable again (version %s) after %d failed reads in %.0f s",
                alias,
                name,
                version,
                self._read_failures,
                time.time() - self._read_failing_since,
                extra={**extra, "failed_reads": self._read_failures},
            )
        self._read_state, self._read_failures = "found", 0

    def _publish(self) -> None:
        try:
            readiness.write_state(self.settings.state_dir, self.state())
        except OSError:
            LOGGER.exception("cannot write the state file in %s", self.settings.state_dir)

    def state(self) -> dict[str, Any]:
        """This process's state: what it serves, the alias target, refusals."""
        current = self._current
        return {
            "role": self.role,
            "model": self.settings.model_name,
            "alias": self.settings.alias,
            "version": current.version if current else None,
            "target": self._target,
            "scorer": self.settings.scorer,
            "refused": {v: reason for v, (reason, _, _) in self._refused.items()},
            "refusal_counts": dict(self.refusal_counts.counts),
            "approval_sequence": current.approval.sequence if current and current.approval else None,
            "last_error": self.last_error,
            "loads": self.loads,
        }

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start following the alias (first read at once, in the background)."""
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        if self._thread is not None:
            return
        self._publish()
        atexit.register(self._at_exit)
        self._thread = threading.Thread(target=self._run, name="alias-follower", daemon=True)
        self._thread.start()

    def _at_exit(self) -> None:
        """At interpreter exit (a gunicorn worker's graceful stop): stop the follower before the
        interpreter and the C++ libraries tear down what a load in progress is running (an
        onnxruntime warm-up), then remove the state file."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=EXIT_JOIN_S)
        readiness.remove_state(self.settings.state_dir)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                LOGGER.exception("alias follower iteration failed")
            self._stop.wait(self.settings.poll_interval_s)

    def stop(self) -> None:
        """Stop following (the current version keeps serving)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        readiness.remove_state(self.settings.state_dir)

    def wait_loaded(self, timeout_s: float) -> bool:
        """Block until a version is loaded (True) or ``timeout_s`` passed (False)."""
        deadline = time.monotonic() + timeout_s
        while self._current is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self._current is not None

    # --- scoring -------------------------------------------------------------------------------

    def readiness(self) -> readiness.SlotReadiness:
        """The slot's readiness across all its serving processes."""
        return readiness.slot_readiness(self.settings.state_dir, self.settings.serving_processes)

    def model(self) -> LoadedModel:
        """The current version (take it once per request).

        Raises:
            NoModel: nothing loaded yet.
        """
        current = self._current
        if current is None:
            raise NoModel(f"no version of {self.settings.model_name}@{self.settings.alias} loaded yet")
        return current

    def score(self, model: LoadedModel, columns: Mapping[str, np.ndarray], n: int) -> Scored:
        """Score typed columns with ``model`` (the one the request took at its start)."""
        probabilities = model.serving.predict_default(columns, n)
        decisions = [REJECT if p >= model.threshold else APPROVE for p in probabilities.tolist()]
        return Scored(
            name=model.name,
            version=model.version,
            alias=self.settings.alias,
            threshold=model.threshold,
            scorer=model.serving.kind,
            probabilities=probabilities,
            decisions=decisions,
        )
