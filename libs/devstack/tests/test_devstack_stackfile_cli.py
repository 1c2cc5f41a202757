from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from creditrisk_devstack import (
    GrpcReadiness,
    HttpReadiness,
    NoReadiness,
    StackFileError,
    TcpReadiness,
    free_port,
    load_stack,
)
from creditrisk_devstack.procgroup import pid_alive
from devstack_testutil import PY, wait_for_file, wait_gone

pytestmark = pytest.mark.timeout(60)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stack.toml"
    path.write_text(text)
    return path


def test_load_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVSTACK_PORT", "8123")
    stack = load_stack(
        write(
            tmp_path,
            """
root = "."
log_dir = "out/logs"
[defaults]
timeout_s = 5
env = { OMP_NUM_THREADS = "1", A = "default" }

[[process]]
name = "web"
argv = ["python", "-m", "http.server", "${DEVSTACK_PORT}"]
ready = { http = "http://127.0.0.1:${DEVSTACK_PORT}/health" }
env = { A = "${root}/x" }
grace_s = 3
stop_signal = "INT"

[[process]]
name = "grpc"
cmd = "python server.py --port 50051"
cwd = "services/x"
ready = { grpc = "127.0.0.1:50051", service = "creditrisk.X" }
depends_on = []
pre_stop = ["true"]

[[process]]
name = "tcp"
argv = ["sleep", "1"]
ready = { tcp = 6379 }
""",
        )
    )
    root = tmp_path.resolve()
    assert stack.root == root
    assert stack.log_dir == root / "out/logs"
    web, grpc, tcp = stack.processes
    assert web.argv == ["python", "-m", "http.server", "8123"]
    assert web.ready == HttpReadiness("http://127.0.0.1:8123/health")
    assert web.env == {"OMP_NUM_THREADS": "1", "A": f"{root}/x"}
    assert (web.timeout_s, web.grace_s, web.stop_signal, web.depends_on) == (5, 3, signal.SIGINT, None)
    assert grpc.argv == ["python", "server.py", "--port", "50051"]
    assert grpc.cwd == root / "services/x"
    assert grpc.ready == GrpcReadiness("127.0.0.1:50051", "creditrisk.X")
    assert grpc.depends_on == ()
    assert grpc.before_stop is not None
    assert tcp.ready == TcpReadiness(6379)
    assert tcp.ready.address() == ("127.0.0.1", 6379)
    assert NoReadiness().address() is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[[process]]\nname = 'a'\n", "exactly one of argv / cmd"),
        ("[[process]]\nname = 'a'\nargv = ['x']\nbogus = 1\n", "unknown keys"),
        ("[[process]]\nname = 'a'\nargv = ['x']\nready = { tcp = 1, http = 'u' }\n", "exactly one of"),
        ("[[process]]\nname = 'a'\nargv = ['${NOPE_NOT_SET_ANYWHERE}']\n", "cannot expand"),
        ("[[process]]\nname = 'a'\nargv = ['x']\nstop_signal = 'SIGNOPE'\n", "unknown signal"),
        ("root = '.'\n", "no [[process]]"),
    ],
)
def test_load_stack_errors(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(StackFileError, match=re.escape(message)):
        load_stack(write(tmp_path, body))


def devstack(*args: str) -> list[str]:
    return [PY, "-m", "creditrisk_devstack", *args]


def test_cli_check(tmp_path: Path) -> None:
    path = write(tmp_path, "root = '.'\n[[process]]\nname = 'a'\ncmd = 'sleep 1'\nready = { tcp = 1234 }\n")
    env = {**os.environ, "COLUMNS": "250"}  # rich wraps at 80 columns without a terminal
    result = subprocess.run(devstack("check", str(path)), capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 0, result.stderr
    assert "tcp 127.0.0.1:1234" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_up_runs_until_signalled(tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    path = write(
        tmp_path,
        f"""
root = "."
[[process]]
name = "web"
argv = ["{PY}", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
ready = {{ http = "http://127.0.0.1:{port}/" }}
grace_s = 2
""",
    )
    env = {**os.environ, "COLUMNS": "250"}  # one line per message: "stack ready" is not wrapped
    cli = subprocess.Popen(
        devstack("up", str(path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(line.decode() for line in cli.stdout), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        header = wait_for_file(tmp_path / ".run/logs/web.log", timeout=30)
        deadline = time.monotonic() + 60
        while (match := re.search(r"pid=(\d+)", header)) is None and time.monotonic() < deadline:
            time.sleep(0.05)
            header = (tmp_path / ".run/logs/web.log").read_text()
        assert match is not None
        pid = int(match.group(1))
        # signalled once it says the stack is ready (in its run loop), however slow the machine
        while not any("stack ready" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(cli.pid, sig)
        assert cli.wait(timeout=20) == 128 + sig, "".join(lines)
        reader.join(timeout=10)
        assert any("stack ready" in line for line in lines), "".join(lines)
        assert wait_gone(pid)
    finally:
        if cli.poll() is None:
            cli.kill()


def test_cli_up_exits_when_a_process_dies(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
root = "."
[[process]]
name = "short"
argv = ["{PY}", "-c", "import time; time.sleep(0.5); print('bye')"]
""",
    )
    result = subprocess.run(
        [*devstack("up", str(path)), "--poll", "0.1"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert "short exited with code 0" in result.stderr
    assert "bye" in result.stderr
    assert not any(
        pid_alive(int(p)) for p in re.findall(r"pid=(\d+)", (tmp_path / ".run/logs/short.log").read_text())
    )
