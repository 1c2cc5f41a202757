"""The local stack's keys per data folder (scripts/stack_keys.py, issue 18): made with ``secrets``
at a folder's first demo run (files 0600), reused by later runs (the demo carries them over when
it moves the previous run aside), read by the services as the kit's key files; every caller of
the stack holds the roles its calls need; nothing prints a key."""

from __future__ import annotations

import io
import json
import stat
import sys
from pathlib import Path

import pytest
from creditrisk_devstack import read_stack_file
from creditrisk_kit.auth import ApiKeys, Role
from creditrisk_kit.secrets import env_from_files
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import demo  # noqa: E402
import stack_certs  # noqa: E402
import stack_keys  # noqa: E402

STACK_FILE = ROOT / "deploy" / "stack" / "local.toml"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_first_run_makes_every_key_private_and_distinct(tmp_path: Path) -> None:
    keys = stack_keys.write_keys(tmp_path)
    folder = tmp_path / "secrets"
    assert _mode(folder) == 0o700
    assert set(keys) == {i.name for i in stack_keys.IDENTITIES}
    assert len(set(keys.values())) == len(keys)
    assert all(len(key) >= 43 for key in keys.values())  # 32 random bytes, URL-safe base64
    for path in folder.iterdir():
        assert _mode(path) == 0o600, path
    for name, key in keys.items():
        assert (folder / f"{name}.key").read_text().strip() == key
    # a second folder has keys of its own
    assert set(stack_keys.write_keys(tmp_path / "other").values()).isdisjoint(keys.values())


def test_later_runs_reuse_the_keys_and_follow_a_rotated_one(tmp_path: Path) -> None:
    first = stack_keys.write_keys(tmp_path)
    assert stack_keys.write_keys(tmp_path) == first
    rotated = "rotated-" + "x" * 40
    (tmp_path / "secrets" / "pipeline.key").write_text(rotated + "\n")
    again = stack_keys.write_keys(tmp_path)
    assert again == {**first, "pipeline": rotated}
    keys = ApiKeys(file=tmp_path / "secrets" / "api-keys.json")
    assert keys.lookup(rotated) is not None
    assert keys.lookup(first["pipeline"]) is None


def test_the_mlflow_passwords_are_private_distinct_and_reused(tmp_path: Path) -> None:
    passwords = stack_keys.write_mlflow_passwords(tmp_path)
    assert set(passwords) == set(stack_keys.MLFLOW_USERS)
    assert len(set(passwords.values())) == len(passwords)
    assert all(len(password) >= 32 for password in passwords.values())
    assert _mode(tmp_path / "secrets") == 0o700
    for user, password in passwords.items():
        path = stack_keys.mlflow_password_file(tmp_path, user)
        assert path == tmp_path / "secrets" / f"mlflow-{user}.password"
        assert _mode(path) == 0o600
        assert path.read_text().strip() == password
    # a later run (or a stack by hand) keeps them; given values fill only missing files
    given = {user: f"given-{user}" for user in stack_keys.MLFLOW_USERS}
    assert stack_keys.write_mlflow_passwords(tmp_path, given) == passwords
    stack_keys.mlflow_password_file(tmp_path, "model-server").unlink()
    again = stack_keys.write_mlflow_passwords(tmp_path, given)
    assert again == {**passwords, "model-server": "given-model-server"}
    assert set(stack_keys.write_mlflow_passwords(tmp_path / "other").values()).isdisjoint(again.values())


def test_each_process_reads_its_mlflow_users_password_from_its_file(tmp_path: Path) -> None:
    """What the stack file names is what write_mlflow_passwords makes: the mlflow process provisions
    every user with the password its service logs in with (creditrisk_kit.secrets, as at start)."""
    passwords = stack_keys.write_mlflow_passwords(tmp_path)
    stack = read_stack_file(STACK_FILE).resolve_all(variables={"data_dir": str(tmp_path)})
    provisioned: dict[str, str] = {}
    logins: dict[str, str] = {}
    for process in stack.processes:
        env = {k: v for k, v in process.env.items() if v is not None}
        names = [k.removesuffix("_FILE") for k in env if "PASSWORD" in k and k.endswith("_FILE")]
        env_from_files(names, env)
        for name in names:
            if name.startswith("CREDITRISK_MLFLOW_PASSWORD_"):
                provisioned[name.removeprefix("CREDITRISK_MLFLOW_PASSWORD_")] = env[name]
            else:
                assert name == "MLFLOW_TRACKING_PASSWORD", (process.name, name)
                logins[env["MLFLOW_TRACKING_USERNAME"]] = env[name]
    assert logins == passwords
    assert provisioned == {user.upper().replace("-", "_"): pw for user, pw in passwords.items()}


def test_every_caller_holds_the_roles_its_calls_need(tmp_path: Path) -> None:
    keys = stack_keys.write_keys(tmp_path)
    services = ApiKeys(file=tmp_path / "secrets" / stack_keys.API_KEYS_FILE)
    gateway = ApiKeys(file=tmp_path / "secrets" / stack_keys.GATEWAY_API_KEYS_FILE)

    def holds(source: ApiKeys, name: str, *roles: Role) -> bool:
        principal = source.lookup(keys[name])
        return principal is not None and all(principal.has(role) for role in roles)

    # the pipeline (the demo, kfp.local): features, training, the registry, labels, monitoring,
    # and the gateway's slots (confirm-rollout)
    assert holds(services, "pipeline", Role.WRITE_FEATURES, Role.TRAIN, Role.REGISTER, Role.PROMOTE)
    assert holds(services, "pipeline", Role.WRITE_LABELS, Role.LOG_PREDICTIONS, Role.READ_MONITORING)
    assert holds(gateway, "pipeline", Role.READ_REGISTRY)
    assert not holds(gateway, "pipeline", Role.PREDICT)
    assert holds(services, "admin", Role.ADMIN)
    assert holds(gateway, "admin", Role.ADMIN)
    # the services' own identities: what they call
    assert holds(services, "inference-gateway", Role.READ_FEATURES, Role.READ_REGISTRY, Role.LOG_PREDICTIONS)
    assert not holds(services, "inference-gateway", Role.READ_MONITORING)  # no call of it needs it
    assert holds(services, "drift-service", Role.READ_REGISTRY)
    assert holds(services, "registry-gateway", Role.READ_FEATURES)
    assert holds(services, "training-service", Role.READ_FEATURES)
    assert not holds(services, "training-service", Role.WRITE_FEATURES)
    # the gateway's example client scores, and nothing else: no feature echo, no slots, no metrics
    client = gateway.lookup(keys["gateway-client"])
    assert client is not None
    assert client.roles == frozenset({Role.PREDICT})
    assert not holds(gateway, "gateway-client", Role.READ_FEATURES)
    assert services.lookup(keys["gateway-client"]) is None
    assert services.lookup(keys["pipeline"]).subject == "demo-pipeline"  # type: ignore[union-attr]


def test_every_credential_file_of_the_stack_is_an_identitys(tmp_path: Path) -> None:
    platform = read_stack_file(STACK_FILE)
    stack = platform.resolve_all(variables={"data_dir": str(tmp_path)})
    names = {i.name for i in stack_keys.IDENTITIES}
    seen = set()
    for process in stack.processes:
        for key, value in process.env.items():
            if key.endswith("_CREDENTIAL_FILE"):
                assert Path(value).parent == tmp_path / "secrets", (process.name, value)
                seen.add(Path(value).stem)
    assert seen <= names
    assert seen == {"inference-gateway", "drift-service", "registry-gateway", "training-service"}


def test_the_demo_carries_the_folders_keys_over_to_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "embedded"
    monkeypatch.setattr(demo, "STATE", state)
    monkeypatch.setattr(demo, "PROFILE", "embedded")
    monkeypatch.setattr(demo, "console", Console(file=io.StringIO()))
    keys = stack_keys.write_keys(state)
    passwords = stack_keys.write_mlflow_passwords(state)
    ca = stack_certs.write_certificates(state).ca_cert.read_bytes()
    (state / "mlflow").mkdir()
    demo.fresh_state()
    assert not (state / "mlflow").exists()  # the run's state moved aside, the keys stayed
    assert (tmp_path / "embedded.previous" / "mlflow").is_dir()
    assert not (tmp_path / "embedded.previous" / "secrets").exists()
    assert not (tmp_path / "embedded.previous" / "tls").exists()
    assert stack_keys.write_keys(state) == keys
    assert stack_keys.write_mlflow_passwords(state) == passwords
    assert stack_certs.write_certificates(state).ca_cert.read_bytes() == ca  # clients keep trusting it
    assert _mode(state / "secrets") == 0o700
    assert _mode(state / "tls") == 0o700


def test_the_last_lines_read_the_client_key_from_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "STATE", ROOT / ".run" / "demo" / "embedded")
    lines = demo.by_hand()
    curl = next(line for line in lines if "curl" in line)
    assert "$(cat .run/demo/embedded/secrets/gateway-client.key)" in curl
    assert "--cacert .run/demo/embedded/tls/ca.pem" in curl  # TLS, checked
    assert "https://" in curl
    assert any("grpcurl -cacert .run/demo/embedded/tls/ca.pem" in line for line in lines)
    assert any("grpcurl" in line and "$(cat " in line for line in lines)
    keys = stack_keys.write_keys(tmp_path)
    assert not any(key in "\n".join(lines) for key in keys.values())


def test_a_missing_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"gateway-client\.key"):
        stack_keys.read_key(tmp_path, "gateway-client")
    keys = stack_keys.write_keys(tmp_path)
    assert stack_keys.read_key(tmp_path, "gateway-client") == keys["gateway-client"]
    assert json.loads((tmp_path / "secrets" / "inference-gateway-api-keys.json").read_text())


def test_the_pipelines_read_the_pipeline_key_from_its_file_not_an_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kfp logs a pipeline's arguments (its executor input): the demo names the key's file in the
    pipeline process's environment (kfp.local's components inherit it) and passes no key."""
    monkeypatch.setattr(demo, "STATE", tmp_path)
    monkeypatch.setenv("CREDITRISK_CREDENTIAL", "a stray value of the caller's shell")
    keys = stack_keys.write_keys(tmp_path)
    monkeypatch.setitem(demo.KEYS, "pipeline", keys["pipeline"])
    env = demo.pipeline_env()
    assert env["CREDITRISK_CREDENTIAL_FILE"] == str(tmp_path / "secrets" / "pipeline.key")
    assert Path(env["CREDITRISK_CREDENTIAL_FILE"]).read_text().strip() == keys["pipeline"]
    assert "CREDITRISK_CREDENTIAL" not in env
    assert env["PATH"]  # the rest of the environment carried over
    targets = dict.fromkeys(
        ("feature-service", "training-service", "registry-gateway", "inference-gateway"), "h:1"
    )
    arguments = json.dumps(demo._arguments(targets))
    assert not any(key in arguments for key in keys.values())
    assert "token" not in arguments
