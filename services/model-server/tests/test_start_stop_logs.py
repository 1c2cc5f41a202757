"""A seldon slot started before the first promotion and stopped by SIGTERM to its process group
(as the supervisor stops it), read from its log: the waiting state logged once per serving
process over many polls, and a shutdown without tracebacks, dying workers or errors.

Own model name on the session's ``mlflow server`` (no alias ever set): runs in any order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from model_server import readiness
from model_server.__main__ import seldon_command
from model_server.testing import fixtures as fx

POLL_S = 0.25
WAITING = "waiting for alias champion of model {model} to exist"


def _json_lines(text: str) -> list[dict[str, object]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def test_waiting_logged_once_and_sigterm_shutdown_is_clean(tracking_uri: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    model = f"never-promoted-{uuid.uuid4().hex[:8]}"
    MlflowClient(tracking_uri, tracking_uri).create_registered_model(model)  # registered, no alias
    cmd = seldon_command(
        model=model,
        alias="champion",
        http_port=fx.free_port(),
        grpc_port=fx.free_port(),
        metrics_port=fx.free_port(),
    )
    state_dir = tmp_path / "state"
    env = fx.clean_env(
        **{
            **cmd.env,
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MODEL_SERVER_POLL_INTERVAL_S": str(POLL_S),
            "MODEL_SERVER_STATE_DIR": str(state_dir),
            "MODEL_SERVER_CACHE_DIR": str(tmp_path / "cache"),
            "MODEL_SERVER_TRUSTED_KEYS_FILE": str(fx.trusted_keys_file(tmp_path / "keys")),
        }
    )
    log = tmp_path / "seldon.log"
    proc = fx.start_process(cmd.argv, env, log)
    try:
        deadline = time.monotonic() + 180
        while len(readiness.read_states(state_dir)) < 2:  # the REST and the gRPC worker
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        pids = {str(s["pid"]) for s in readiness.read_states(state_dir)}
        time.sleep(12 * POLL_S)  # a dozen polls in each process
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            returncode = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the slot did not stop within 60 s of SIGTERM:\n" + log.read_text()[-3000:])
    finally:
        fx.stop_process(proc)
    text = log.read_text()
    lines = _json_lines(text)
    waiting = [rec for rec in lines if rec.get("message") == WAITING.format(model=model)]
    assert sorted(str(rec.get("pid")) for rec in waiting) == sorted(pids), text[-3000:]
    assert {rec.get("level") for rec in waiting} == {"INFO"}
    # nothing per poll: the only lines of the slot's logger are the two waiting lines
    assert [rec for rec in lines if rec.get("logger") == "model_server.slot"] == waiting, text[-3000:]
    for bad in ("Traceback", "SIGSEGV", "SIGABRT", "was sent", "terminate called", "Error", "Exception"):
        assert bad not in text, f"{bad!r} in the slot's log:\n{text[-4000:]}"
    # JSON lines, gunicorn's "[ERROR]" and seldon-core's " - ERROR:" alike
    assert not re.search(
        r'"level": "(WARNING|ERROR|CRITICAL)"|\[(WARNING|ERROR|CRITICAL)\]|- (WARNING|ERROR|CRITICAL):', text
    ), text[-3000:]
    assert returncode == 0, text[-3000:]
