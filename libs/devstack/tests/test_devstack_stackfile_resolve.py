"""Stack files with ports, variables, profiles, wants and extends: one process resolved at a time."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from creditrisk_devstack import (
    GrpcReadiness,
    HttpReadiness,
    StackFileError,
    Supervisor,
    load_stack,
    read_stack_file,
)
from devstack_testutil import PY, wait_for_file

pytestmark = pytest.mark.timeout(60)

STACK = """
root = "."
profiles = ["embedded", "real"]

[vars]
data_dir = "${root}/data/${profile}"
experiment = "demo"
tokens = '{"${experiment}-token": "viewer"}'

[defaults]
env = { OMP_NUM_THREADS = "1" }

[[process]]
name = "store"
depends_on = []
ports = ["port", "metrics"]
argv = ["store", "--port", "${self.port}", "--metrics", "${self.metrics}", "--dir", "${data_dir}/${name}"]
ready = { grpc = "127.0.0.1:${self.port}" }
[process.profile.real]
args = ["--dsn", "${dsn}"]
env = { STORE_PROJECT = "${project}" }

[[process]]
name = "tracker"
depends_on = []
ports = ["port"]
argv = ["tracker", "${self.port}"]

[[process]]
name = "api"
depends_on = ["store"]
ports = ["port", "http"]
argv = ["api"]
unset_env = ["VIRTUAL_ENV"]
dirs = ["${data_dir}/${name}"]
ready = { http = "http://127.0.0.1:${self.http}/ready" }
env = { STORE = "127.0.0.1:${store.port}", EXPERIMENT = "${experiment}", TOKENS = "${tokens}" }
[process.wants.tracker]
env = { TRACKER = "http://127.0.0.1:${tracker.port}" }

[[process]]
name = "api-2"
extends = "api"
env = { EXPERIMENT = "second" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stack.toml"
    path.write_text(text)
    return path


def test_load_stack_gives_each_port_a_free_one_and_each_reference_its_value(tmp_path: Path) -> None:
    stack = load_stack(write(tmp_path, STACK))
    root = tmp_path.resolve()
    store, tracker, api, api_2 = stack.processes
    ports = stack.ports
    assert set(ports) == {"store", "tracker", "api", "api-2"}
    numbers = [n for p in ports.values() for n in p.values()]
    assert len(set(numbers)) == len(numbers) == 7  # every port its own
    assert store.argv == [
        "store", "--port", str(ports["store"]["port"]), "--metrics", str(ports["store"]["metrics"]),
        "--dir", f"{root}/data/embedded/store",
    ]  # fmt: skip
    assert store.ready == GrpcReadiness(f"127.0.0.1:{ports['store']['port']}")
    assert stack.profile == "embedded"
    assert api.env == {
        "OMP_NUM_THREADS": "1",
        "STORE": f"127.0.0.1:{ports['store']['port']}",
        "EXPERIMENT": "demo",
        "TOKENS": '{"demo-token": "viewer"}',
        "TRACKER": f"http://127.0.0.1:{ports['tracker']['port']}",  # tracker is in the stack
        "VIRTUAL_ENV": None,
    }
    assert api.depends_on == ("store", "tracker")  # what it wants starts before it
    assert api.ready == HttpReadiness(f"http://127.0.0.1:{ports['api']['http']}/ready")
    assert api.dirs == (root / "data/embedded/api",)
    # extends: everything of api, env merged, its own ports and name
    assert api_2.argv == ["api"]
    assert api_2.env["EXPERIMENT"] == "second"
    assert api_2.env["STORE"] == api.env["STORE"]
    assert api_2.dirs == (root / "data/embedded/api-2",)
    assert api_2.ready == HttpReadiness(f"http://127.0.0.1:{ports['api-2']['http']}/ready")
    assert tracker.env == {"OMP_NUM_THREADS": "1"}


def test_a_profile_adds_its_arguments_and_environment(tmp_path: Path) -> None:
    stack = load_stack(
        write(tmp_path, STACK), profile="real", variables={"dsn": "postgresql://x/y", "project": "p1"}
    )
    store = stack.processes[0]
    assert store.argv[-3:] == [f"{tmp_path.resolve()}/data/real/store", "--dsn", "postgresql://x/y"]
    assert store.env["STORE_PROJECT"] == "p1"
    with pytest.raises(StackFileError, match=re.escape("cannot expand '${dsn}'")):
        load_stack(write(tmp_path, STACK), profile="real")  # the real profile's names have no default
    with pytest.raises(StackFileError, match="no profile 'cloud'"):
        load_stack(write(tmp_path, STACK), profile="cloud")


def test_a_callers_variables_replace_the_files_and_feed_the_others(tmp_path: Path) -> None:
    file = read_stack_file(write(tmp_path, STACK))
    values = file.variables(variables={"experiment": "e2e", "data_dir": "/tmp/session"})
    assert values["tokens"] == '{"e2e-token": "viewer"}'
    assert values["data_dir"] == "/tmp/session"
    running = {"store": {"port": 7001, "metrics": 7002}}
    api = file.resolve("api", variables={"experiment": "e2e"}, running=running, ports={"port": 7100})
    assert api.ports["port"] == 7100
    assert api.address == "127.0.0.1:7100"
    assert api.spec.env["STORE"] == "127.0.0.1:7001"
    assert api.spec.env["EXPERIMENT"] == "e2e"
    assert "TRACKER" not in api.spec.env  # tracker is not running: what it wants is left out
    assert api.spec.depends_on == ("store",)
    assert file.dependencies("api") == ("store",)


@pytest.mark.parametrize("name", ["profile", "root", "name", "store.port"])
def test_a_callers_variable_cannot_replace_a_built_in(tmp_path: Path, name: str) -> None:
    # --set profile=real made ${profile} "real" while the embedded profile's overlays applied
    file = read_stack_file(write(tmp_path, STACK))
    with pytest.raises(StackFileError, match="built in"):
        file.resolve("store", variables={name: "x"})


def test_resolving_a_process_whose_dependency_is_not_running_names_it(tmp_path: Path) -> None:
    file = read_stack_file(write(tmp_path, STACK))
    with pytest.raises(StackFileError, match=r"port store\.port unknown \(store is not running\)"):
        file.resolve("api")
    with pytest.raises(StackFileError, match="no process 'nope'"):
        file.resolve("nope")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "[[process]]\nname = 'a'\nargv = ['x']\n[[process]]\nname = 'b'\ndepends_on = []\n"
            "argv = ['${a.port}']\n",
            "${a.port} is no port of its own or of a process it depends on / wants",
        ),
        (
            "[[process]]\nname = 'a'\nports = ['port']\nargv = ['x']\n[[process]]\nname = 'b'\n"
            "argv = ['${a.http}']\n",
            "${a.http} is no port",
        ),
        ("[[process]]\nname = 'a'\nargv = ['${self.port}']\n", "${self.port} is no port"),
        ("[[process]]\nname = 'a'\nargv = ['x']\ndepends_on = ['b']\n", "not above"),
        ("[[process]]\nname = 'a'\nextends = 'b'\n", "extends 'b', not declared above"),
        ("[[process]]\nname = 'a'\nargv = ['x']\n[process.profile.real]\nargs = ['y']\n", "not in []"),
        ("[[process]]\nname = 'a'\nargv = ['x']\nports = ['Port']\n", "lower-case names"),
        ("[[process]]\nname = 'a'\nargv = ['x']\n[[process]]\nname = 'a'\nargv = ['y']\n", "declared above"),
        ("[vars]\nroot = 'x'\n[[process]]\nname = 'a'\nargv = ['x']\n", "[vars] must be a table"),
        # a value of the wrong TOML type: a clear error, never a traceback nor a list of letters
        ("[[process]]\nname = 'a'\nargv = 'python -m x'\n", "argv must be a list of strings"),
        ("[[process]]\nname = 'a'\nargv = ['x']\nports = 'port'\n", "ports must be a list of strings"),
        ("[[process]]\nname = 'a'\nargv = ['x']\nenv = 'A=1'\n", "env must be a table"),
        ("defaults = []\n[[process]]\nname = 'a'\nargv = ['x']\n", "[defaults] must be a table"),
        ("[[process]]\nname = 'a'\nargv = ['x']\n[[process]]\nname = 'b'\nextends = ['a']\n", "extends must"),
        (
            "profiles = ['p']\n[[process]]\nname = 'a'\nargv = ['x']\nprofile = 'p'\n",
            "profile must be a table",
        ),
        ("[[process]]\nname = 5\nargv = ['x']\n", "name must be a non-empty string"),
        ("[[process]]\nname = 'a'\nargv = ['x']\ntimeout_s = 'soon'\n", "timeout_s must be a number"),
        (
            "[[process]]\nname = 'a'\nargv = ['x']\n[[process]]\nname = 'b'\nargv = ['y']\n"
            "depends_on = 'a'\n",
            "depends_on must be a list of strings",
        ),
        ("profiles = 'real'\n[[process]]\nname = 'a'\nargv = ['x']\n", "profiles must be a list of names"),
        ("process = [1]\n", "process #1 must be a [[process]] table"),
    ],
)
def test_read_stack_file_errors(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(StackFileError, match=re.escape(message)):
        read_stack_file(write(tmp_path, body))


def test_the_supervisor_creates_the_dirs_and_runs_pre_stop_in_the_process_environment(tmp_path: Path) -> None:
    seen = tmp_path / "pre_stop_saw"
    stack = load_stack(
        write(
            tmp_path,
            f"""
root = "."
[[process]]
name = "web"
ports = ["port"]
argv = ["{PY}", "-m", "http.server", "${{self.port}}", "--bind", "127.0.0.1"]
dirs = ["${{root}}/made/for/${{name}}"]
env = {{ MARK = "from-the-file" }}
ready = {{ http = "http://127.0.0.1:${{self.port}}/" }}
pre_stop = ["{PY}", "-c", "import os, sys; open(sys.argv[1], 'w').write(os.environ['MARK'])", "{seen}"]
pre_stop_timeout_s = 20
grace_s = 2
""",
        ),
        variables={},
    )
    with Supervisor(tmp_path / "logs") as sup:
        sup.start_all(stack.processes)
        assert (tmp_path / "made" / "for" / "web").is_dir()
    assert wait_for_file(seen) == "from-the-file"


def test_cli_check_takes_a_profile_and_variables(tmp_path: Path) -> None:
    short = "root = '.'\nprofiles = ['embedded', 'real']\n[[process]]\nname = 's'\nargv = ['s']\n"
    path = write(tmp_path, short + "[process.profile.real]\nargs = ['--dsn', '${dsn}']\n")
    env = {**os.environ, "COLUMNS": "250"}  # rich wraps at 80 columns without a terminal
    command = [PY, "-m", "creditrisk_devstack", "check", str(path), "--profile", "real"]
    result = subprocess.run(
        [*command, "--set", "dsn=pg://h/db"], capture_output=True, text=True, timeout=30, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "s --dsn pg://h/db" in result.stderr
    missing = subprocess.run(command, capture_output=True, text=True, timeout=30, env=env)
    assert missing.returncode == 2
    assert "cannot expand" in missing.stderr
    wrong = subprocess.run([*command, "--set", "dsn"], capture_output=True, text=True, timeout=30, env=env)
    assert wrong.returncode == 2
    assert "--set takes NAME=VALUE" in wrong.stderr
