"""The platform's stack file, ``deploy/stack/local.toml``: one definition that ``make demo`` and the
end-to-end tests both run (issue 17), every service in it, each address wired to what it names."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from creditrisk_devstack import ProcessSpec, read_stack_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import demo  # noqa: E402
import e2e_stack  # noqa: E402

STACK_FILE = ROOT / "deploy" / "stack" / "local.toml"
#: An address of the stack's (a shared server's, in a DSN after ``user@``, is not)
ADDRESS = re.compile(r"(?<!@)127\.0\.0\.1:(\d+)")


def test_the_demo_and_the_end_to_end_tests_read_the_same_file() -> None:
    assert demo.STACK.path == e2e_stack.PLATFORM.path == STACK_FILE.resolve()
    assert set(demo.DEMO_PROCESSES) <= set(demo.STACK.names)


def test_every_service_runs_as_python_m_its_package_in_its_own_environment() -> None:
    stack = read_stack_file(STACK_FILE).resolve_all()
    for main in sorted(ROOT.glob("services/*/src/*/__main__.py")):
        service, package = main.parents[2].name, main.parent.name
        spec = next((s for s in stack.processes if list(s.argv[1:3]) == ["-m", package]), None)
        assert spec is not None, f"no process of {STACK_FILE.name} runs python -m {package}"
        assert spec.argv[0] == str(ROOT / "services" / service / ".venv" / "bin" / "python")
        assert spec.cwd == ROOT / "services" / service


def _wired(specs: tuple[ProcessSpec, ...], ports: dict[str, dict[str, int]]) -> None:
    """Every address in a process's settings is a port of itself or of a process it starts after."""
    owner = {number: name for name, named in ports.items() for number in named.values()}
    assert len(owner) == sum(len(named) for named in ports.values())  # no port given twice
    for spec in specs:
        for value in [*spec.env.values(), *spec.argv]:
            for port in ADDRESS.findall(value or ""):
                assert owner[int(port)] in (spec.name, *(spec.depends_on or ())), (spec.name, value)


@pytest.mark.parametrize("profile", ["embedded", "real"])
def test_the_demos_processes_are_wired_to_each_other(profile: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "PROFILE", profile)
    stack = demo.demo_stack()
    assert [spec.name for spec in stack.processes] == list(demo.DEMO_PROCESSES)
    _wired(stack.processes, {k: dict(v) for k, v in stack.ports.items()})
    drift = next(spec for spec in stack.processes if spec.name == "drift-service")
    # the demo starts it after MLflow and the registry-gateway: a version's training dataset is its
    # default reference
    # default reference, found with its own key (a file of the data folder, never a value); the
    # callers it accepts are the stack's api-keys.json, as the registry-gateway's
    assert "DRIFT_SERVICE_REGISTRY_TOKEN" not in drift.env
    assert drift.env["DRIFT_SERVICE_CREDENTIAL_FILE"] == str(demo.STATE / "secrets" / "drift-service.key")
    registry = next(spec for spec in stack.processes if spec.name == "registry-gateway")
    assert (
        drift.env["DRIFT_SERVICE_AUTH_API_KEYS_FILE"] == registry.env["REGISTRY_GATEWAY_AUTH_API_KEYS_FILE"]
    )
    (root,) = json.loads(drift.env["DRIFT_SERVICE_DATASET_ROOTS"])
    assert root == str(Path(drift.env["DRIFT_SERVICE_DATA_DIR"]).parent / "datasets")
    assert (
        drift.env["DRIFT_SERVICE_REGISTRY_TARGET"] == f"127.0.0.1:{stack.ports['registry-gateway']['port']}"
    )


def test_every_process_of_the_file_is_wired_to_what_it_names() -> None:
    stack = read_stack_file(STACK_FILE).resolve_all()
    _wired(stack.processes, {k: dict(v) for k, v in stack.ports.items()})


def test_the_end_to_end_stack_gets_its_own_folder_tokens_and_a_cold_drift_service(tmp_path: Path) -> None:
    stack = e2e_stack.Stack(supervisor=None, workdir=tmp_path)  # type: ignore[arg-type]
    drift = stack.resolve("drift-service").spec
    assert drift.env["DRIFT_SERVICE_DATA_DIR"] == str(tmp_path / "drift-service")
    assert drift.env["DRIFT_SERVICE_WARM_UP"] == "false"
    # nothing runs: the drift-service starts alone, without MLflow or the registry-gateway
    assert "DRIFT_SERVICE_MLFLOW_TRACKING_URI" not in drift.env
    assert "DRIFT_SERVICE_REGISTRY_TARGET" not in drift.env
    running = {"mlflow": {"port": 5000}, "feature-service": {"port": 5001, "metrics": 5002}}
    variables = e2e_stack.e2e_variables(stack)
    registry = e2e_stack.PLATFORM.resolve("registry-gateway", variables=variables, running=running).spec
    # the kit's keys file with kit roles (the legacy REGISTRY_GATEWAY_TOKENS no longer)
    assert "REGISTRY_GATEWAY_TOKENS" not in registry.env
    assert registry.env["REGISTRY_GATEWAY_AUTH_API_KEYS_FILE"] == str(tmp_path / "secrets" / "api-keys.json")
    assert registry.env["REGISTRY_GATEWAY_MLFLOW_TRACKING_URI"] == "https://127.0.0.1:5000"
    # the session's certificates (one CA for every stack of the session), not the data folder's
    assert registry.env["REGISTRY_GATEWAY_TLS_CERT_FILE"] == str(e2e_stack.TLS.cert("registry-gateway"))
    assert registry.env["REGISTRY_GATEWAY_TLS_CA_FILE"] == str(e2e_stack.TLS.ca_cert)
    assert registry.env["REGISTRY_GATEWAY_AUDIT_DB_URL"] == f"sqlite:///{tmp_path}/registry-gateway/audit.db"


ON_DEMAND = (
    "model-server-mlserver",
    "inference-gateway-v2",
    "model-server-challenger",
    "inference-gateway-challenger",
)


def test_devstack_up_and_the_demo_start_the_seven_and_leave_the_slots_only_the_tests_set_up() -> None:
    # the challenger slot waits for an alias the demo never sets: started by default, it timed out
    # and took the whole stack down (issue 17)
    platform = read_stack_file(STACK_FILE)
    assert platform.default_names == demo.DEMO_PROCESSES
    assert set(platform.names) - set(platform.default_names) == set(ON_DEMAND)
    assert "model-server-challenger" in platform.closure(["inference-gateway-challenger"])


@pytest.mark.parametrize("name", ON_DEMAND)
def test_the_end_to_end_tests_still_start_each_on_demand_process(name: str, tmp_path: Path) -> None:
    stack = e2e_stack.Stack(supervisor=None, workdir=tmp_path)  # type: ignore[arg-type]
    # resolved one by one with the ports of those running, as `stack.start(name)` does: the
    # autostart flag is no obstacle
    running: dict[str, dict[str, int]] = {}
    for needed in e2e_stack.PLATFORM.closure([name]):
        resolved = e2e_stack.PLATFORM.resolve(
            needed, variables=e2e_stack.e2e_variables(stack), running=running
        )
        running[needed] = dict(resolved.ports)
    assert resolved.spec.name == name
    setting = "MODEL_SERVER_STATE_DIR" if name.startswith("model-server") else "INFERENCE_GATEWAY_BUFFER_PATH"
    assert (resolved.spec.env[setting] or "").startswith(str(tmp_path / name))


@pytest.mark.parametrize("profile", ["embedded", "real"])
def test_devstack_up_takes_the_demos_lock(profile: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # a hand-run stack and a demo on one data folder exclude each other
    monkeypatch.setattr(demo, "PROFILE", profile)
    monkeypatch.setattr(demo, "STATE", demo.demo_state.profile_dir(ROOT, profile))
    assert demo.demo_stack().lock == demo.demo_state.lock_path(ROOT, profile)
    # by hand, the file's own default data folder is the demo's
    assert read_stack_file(STACK_FILE).lock_path(profile="embedded") == demo.demo_state.lock_path(
        ROOT, "embedded"
    )


#: A key's shape in the file: a value, or a reference to a file (``*_FILE``, a path).
SECRET_SETTING = re.compile(r"_(AUTH_API_KEYS|CREDENTIAL|TOKEN|TOKENS|API_KEY)$|PASSWORD(?!.*_FILE$)")
#: A setting naming a secret's file.
SECRET_FILE = re.compile(r"_(AUTH_API_KEYS|CREDENTIAL|PASSWORD(_[A-Z_]+)?)_FILE$")


@pytest.mark.parametrize("name", read_stack_file(STACK_FILE).names)
def test_no_process_of_the_file_gets_a_key_as_a_value(name: str, tmp_path: Path) -> None:
    """Every credential setting of every process is a ``*_FILE`` in the data folder's secrets."""
    platform = read_stack_file(STACK_FILE)
    spec = platform.resolve_all(platform.closure([name]), variables={"data_dir": str(tmp_path)})
    process = next(p for p in spec.processes if p.name == name)
    inline = [key for key in process.env if SECRET_SETTING.search(key)]
    assert inline == [], f"{name}: keys as values: {inline}"
    files = {k: v for k, v in process.env.items() if SECRET_FILE.search(k)}
    assert all(Path(v).parent == tmp_path / "secrets" for v in files.values()), files


def test_the_mlflow_passwords_are_files_of_the_data_folder_never_values(tmp_path: Path) -> None:
    """H1 of issue 18: a stack by hand used passwords written in the file; now every MLflow user's
    password is ``secrets/mlflow-<user>.password`` for both sides (the mlflow process sets it, the
    service logs in with it), and no value or variable of one is left in the file."""
    text = STACK_FILE.read_text()
    assert "mlflow_password" not in text
    assert not re.search(r"PASSWORD[A-Z_]*\s*=\s*\"(?!\$\{secrets_dir\}/)", text)
    platform = read_stack_file(STACK_FILE)
    stack = platform.resolve_all(variables={"data_dir": str(tmp_path)})
    secrets = tmp_path / "secrets"
    mlflow = next(p for p in stack.processes if p.name == "mlflow")
    provisioned = {
        key: value for key, value in mlflow.env.items() if key.startswith("CREDITRISK_MLFLOW_PASSWORD_")
    }
    assert provisioned == {
        f"CREDITRISK_MLFLOW_PASSWORD_{user.upper().replace('-', '_')}_FILE": str(
            secrets / f"mlflow-{user}.password"
        )
        for user in ("registry-gateway", "training-service", "model-server", "drift-service")
    }
    users = {}
    for process in stack.processes:
        assert "MLFLOW_TRACKING_PASSWORD" not in process.env, process.name
        if "MLFLOW_TRACKING_USERNAME" in process.env:
            user = process.env["MLFLOW_TRACKING_USERNAME"]
            assert process.env["MLFLOW_TRACKING_PASSWORD_FILE"] == str(secrets / f"mlflow-{user}.password")
            users[process.name] = user
    assert users == {
        "training-service": "training-service",
        "registry-gateway": "registry-gateway",
        "drift-service": "drift-service",
        **{f"model-server-{slot}": "model-server" for slot in ("champion", "mlserver", "challenger")},
    }


#: The prefix of each program's settings (``<PREFIX>_TLS_CERT_FILE``); mlflow takes options.
TLS_PREFIX = {
    "feature_service": "FEATURE_SERVICE",
    "training_service": "TRAINING_SERVICE",
    "registry_gateway": "REGISTRY_GATEWAY",
    "drift_service": "DRIFT_SERVICE",
    "model_server": "MODEL_SERVER",
    "inference_gateway": "INFERENCE_GATEWAY",
}


@pytest.mark.parametrize("name", read_stack_file(STACK_FILE).names)
def test_every_server_of_the_file_speaks_tls_and_every_client_checks_it(name: str, tmp_path: Path) -> None:
    """Issue 18's "TLS on in the demo": each process serves its own certificate from the data
    folder's ``tls/`` (scripts/stack_certs.py), its readiness probe checks it against the folder's
    CA, and every address it is given to call is https or a gRPC target it reaches with that CA."""
    platform = read_stack_file(STACK_FILE)
    stack = platform.resolve_all(platform.closure([name]), variables={"data_dir": str(tmp_path)})
    process = next(p for p in stack.processes if p.name == name)
    tls, ca = tmp_path / "tls", str(tmp_path / "tls" / "ca.pem")
    assert getattr(process.ready, "ca_file", None) == ca, process.ready
    assert process.ready.describe().startswith(("http GET https://", "grpc health"))
    assert not [v for v in process.env.values() if v and "http://" in v], "a plaintext URL"
    module = process.argv[2]
    if module == "training_service.mlflow_server":
        assert process.argv[process.argv.index("--tls-cert") + 1] == str(tls / "mlflow.pem")
        assert process.argv[process.argv.index("--tls-key") + 1] == str(tls / "mlflow-key.pem")
        return
    prefix = TLS_PREFIX[module]
    server = module.replace("_", "-")
    assert process.env[f"{prefix}_TLS_CERT_FILE"] == str(tls / f"{server}.pem")
    assert process.env[f"{prefix}_TLS_KEY_FILE"] == str(tls / f"{server}-key.pem")
    calls = [k for k, v in process.env.items() if k.endswith(("_TARGET", "_ADDRESS", "_URL", "_URI"))]
    if calls and module != "model_server":  # the slots call MLflow only (MLflow's own setting)
        assert process.env[f"{prefix}_TLS_CA_FILE"] == ca, calls
    if any("MLFLOW" in k for k in calls):
        assert process.env["MLFLOW_TRACKING_SERVER_CERT_PATH"] == ca
