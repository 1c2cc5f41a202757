"""What ``devstack up`` starts (the default set, ``--only``, ``--with``), the ports it prints and
pins, the stack file's lock, and the messages of ``check`` (issue 17: a new user's first run)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from creditrisk_devstack import StackFileError, free_port, read_stack_file
from creditrisk_devstack.lockfile import LockHeldError, exclusive_lock
from devstack_testutil import PY

pytestmark = pytest.mark.timeout(60)

#: a on its own, b after a, c (on demand) after b, d (on demand) alone
STACK = """
root = "."
lock = "${data_dir}.lock"
[vars]
data_dir = "${root}/data/${profile}"
[[process]]
name = "a"
depends_on = []
ports = ["port"]
argv = ["sleep", "${self.port}"]
[[process]]
name = "b"
depends_on = ["a"]
ports = ["port", "metrics"]
argv = ["sleep", "${a.port}"]
[[process]]
name = "c"
depends_on = ["b"]
autostart = false
argv = ["sleep", "1"]
[[process]]
name = "d"
extends = "c"
depends_on = []
"""


def write(tmp_path: Path, text: str = STACK) -> Path:
    path = tmp_path / "stack.toml"
    path.write_text(text)
    return path


def devstack(*args: str, columns: int = 250) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns)}
    command = [PY, "-m", "creditrisk_devstack", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, env=env)


def test_the_default_set_leaves_out_autostart_false_and_extends_inherits_it(tmp_path: Path) -> None:
    stack = read_stack_file(write(tmp_path))
    assert stack.default_names == ("a", "b")
    assert stack.closure(["c"]) == ("a", "b", "c")  # what it depends on, in declared order
    assert stack.closure(["d", "a"]) == ("a", "d")
    with pytest.raises(StackFileError, match="no process 'e'"):
        stack.closure(["e"])


def test_autostart_must_be_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(StackFileError, match="autostart must be true or false"):
        read_stack_file(write(tmp_path, "[[process]]\nname = 'a'\nargv = ['x']\nautostart = 'no'\n"))


def test_pinned_ports_and_the_lock_resolve(tmp_path: Path) -> None:
    stack = read_stack_file(write(tmp_path)).resolve_all(
        ["a", "b"], variables={"data_dir": str(tmp_path / "x")}, ports={"b": {"metrics": 40123}}
    )
    assert stack.ports["b"]["metrics"] == 40123
    assert stack.ports["b"]["port"] not in (40123, stack.ports["a"]["port"])
    assert list(stack.processes[1].argv) == ["sleep", str(stack.ports["a"]["port"])]
    assert stack.lock == tmp_path / "x.lock"
    with pytest.raises(StackFileError, match=r"cannot pin c\.port: c is not in this stack"):
        read_stack_file(write(tmp_path)).resolve_all(["a"], ports={"c": {"port": 1}})
    with pytest.raises(StackFileError, match=r"cannot pin a\.http.*it has \['port'\]"):
        read_stack_file(write(tmp_path)).resolve_all(["a"], ports={"a": {"http": 1}})


def test_a_missing_variable_is_named_with_how_to_set_it(tmp_path: Path) -> None:
    path = write(tmp_path, "root = '.'\n[[process]]\nname = 'a'\nargv = ['x', '${feature_project}']\n")
    result = devstack("check", str(path))
    assert result.returncode == 2
    assert "no variable 'feature_project'" in result.stderr
    assert "--set feature_project=VALUE" in result.stderr


def test_check_prints_the_selection_one_block_each_whole_commands_at_80_columns(tmp_path: Path) -> None:
    long_arg = "/very/long/" + "folder/" * 20 + "python"
    path = write(tmp_path, STACK.replace('argv = ["sleep", "1"]', f'argv = ["{long_arg}", "-m", "x"]'))
    default = devstack("check", str(path), columns=80)
    assert default.returncode == 0, default.stderr
    assert re.findall(r"^(\w+)  after", default.stderr, re.M) == ["a", "b"]
    assert "not started (add with --with NAME): c, d" in default.stderr
    assert re.search(r"^  ports   port=\d+ metrics=\d+$", default.stderr, re.M)
    chosen = devstack("check", str(path), "--only", "c", "--with", "d", "--port", "a.port=40999", columns=80)
    assert chosen.returncode == 0, chosen.stderr
    assert re.findall(r"^(\w+)  after", chosen.stderr, re.M) == ["a", "b", "c", "d"]
    assert f"  command {long_arg} -m x\n" in chosen.stderr  # not cut at the terminal's width
    assert "  ports   port=40999\n" in chosen.stderr
    bad = devstack("check", str(path), "--port", "a.port=http")
    assert bad.returncode == 2
    assert "--port takes NAME.PORT=N" in bad.stderr


def test_up_prints_pinned_ports_and_holds_the_lock(tmp_path: Path) -> None:
    port = free_port()
    path = write(
        tmp_path,
        f"""
root = "."
lock = "${{root}}/run.lock"
[[process]]
name = "web"
ports = ["port"]
argv = ["{PY}", "-m", "http.server", "${{self.port}}", "--bind", "127.0.0.1"]
ready = {{ http = "http://127.0.0.1:${{self.port}}/" }}
grace_s = 2
""",
    )
    output = tmp_path / "up.out"
    with output.open("w") as out_file:
        cli = subprocess.Popen(
            [PY, "-m", "creditrisk_devstack", "up", str(path), "--port", f"web.port={port}"],
            stdout=out_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "250"},
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        lock = tmp_path / "run.lock"  # it writes its pid once it holds the lock
        while not (lock.exists() and lock.read_text() == str(cli.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LockHeldError) as held, exclusive_lock(lock):
            pass
        assert held.value.holder == str(cli.pid)
        second = devstack("up", str(path))  # the same data folder: refused, nothing started
        assert second.returncode == 1
        assert f"run.lock is held by pid {cli.pid}" in second.stderr
        assert "a `make demo` or another `devstack up` uses this data folder" in second.stderr
        while "stack ready" not in output.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(cli.pid, signal.SIGTERM)
        cli.wait(timeout=20)
        out = output.read_text()
        assert f"web: port={port}" in out
        assert "stack ready" in out
        assert re.search(rf"web\s*│\s*port={port}", out), out
    finally:
        if cli.poll() is None:
            cli.kill()
    with exclusive_lock(tmp_path / "run.lock"):  # released when it stopped
        pass
