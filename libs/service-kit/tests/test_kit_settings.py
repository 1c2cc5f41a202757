"""ServiceSettings: typed fields from the environment; a bad variable exits 2 naming it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from creditrisk_kit import EXIT_BAD_CONFIGURATION, ServiceSettings
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict


class FeatureServiceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FEATURE_SERVICE_")
    online_store: str = "sqlite"
    online_store_url: SecretStr = SecretStr("sqlite:///online.db")
    entity_keys: list[str] = Field(default_factory=lambda: ["applicant_id"])


def test_defaults() -> None:
    settings = FeatureServiceSettings()
    assert settings.max_message_bytes == 4 * 1024 * 1024
    assert settings.port == 50051
    assert settings.bind_address == "127.0.0.1:50051"  # loopback unless told (images: 0.0.0.0)
    assert ServiceSettings(host="::1", port=1).bind_address == "[::1]:1"


def test_environment_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURE_SERVICE_PORT", "50052")
    monkeypatch.setenv("FEATURE_SERVICE_GRACE_PERIOD_S", "7.5")
    monkeypatch.setenv("FEATURE_SERVICE_ONLINE_STORE", "redis")
    monkeypatch.setenv("FEATURE_SERVICE_LOG_LEVEL", "DEBUG")
    settings = FeatureServiceSettings.load_or_exit()
    assert (settings.port, settings.grace_period_s, settings.online_store) == (50052, 7.5, "redis")
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FEATURE_SERVICE_PORT", "not-a-port"),
        ("FEATURE_SERVICE_PORT", "70000"),
        ("FEATURE_SERVICE_MAX_MESSAGE_BYTES", "0"),
        ("FEATURE_SERVICE_HEALTH_CHECK_INTERVAL_S", "-1"),
        ("FEATURE_SERVICE_LOG_LEVEL", "LOUD"),
        ("FEATURE_SERVICE_GRACE_PERIOD_S", "inf"),
        ("FEATURE_SERVICE_HEALTH_CHECK_INTERVAL_S", "nan"),
        ("FEATURE_SERVICE_ENTITY_KEYS", "applicant_id,loan_id"),  # SettingsError: not JSON
        ("FEATURE_SERVICE_ENTITY_KEYS", '{"a": 1}'),
    ],
)
def test_bad_variable_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as info:
        FeatureServiceSettings.load_or_exit()
    assert info.value.code == EXIT_BAD_CONFIGURATION == 2
    err = capsys.readouterr().err
    assert variable in err
    assert f"{variable}: " in err
    assert f"={value!r}" not in err  # values are never printed
    assert len(value) < 3 or value not in err


def test_secret_value_is_never_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEATURE_SERVICE_ONLINE_STORE_URL", "")
    monkeypatch.setenv("FEATURE_SERVICE_PORT", "redis://:hunter2@cache:6379")
    with pytest.raises(SystemExit):
        FeatureServiceSettings.load_or_exit()
    err = capsys.readouterr().err
    assert "FEATURE_SERVICE_PORT" in err
    assert "hunter2" not in err


def test_non_finite_float_has_a_clear_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEATURE_SERVICE_GRACE_PERIOD_S", "inf")
    with pytest.raises(SystemExit):
        FeatureServiceSettings.load_or_exit()
    assert "FEATURE_SERVICE_GRACE_PERIOD_S: Input should be a finite number" in capsys.readouterr().err


def test_list_field_not_json_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEATURE_SERVICE_ENTITY_KEYS", "a,b")
    with pytest.raises(SystemExit) as info:
        FeatureServiceSettings.load_or_exit()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "FEATURE_SERVICE_ENTITY_KEYS: cannot be parsed (this field takes JSON" in err


def test_log_level_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURE_SERVICE_LOG_LEVEL", "debug")
    assert FeatureServiceSettings.load_or_exit().log_level == "DEBUG"
    assert FeatureServiceSettings(log_level=" Warning ").log_level == "WARNING"  # type: ignore[arg-type]


def test_unknown_variable_with_the_prefix_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEATURE_SERVICE_PROT", "50052")
    monkeypatch.setenv("FEATURE_SERVICE_PORT", "50053")
    settings = FeatureServiceSettings.load_or_exit()
    assert settings.port == 50053
    err = capsys.readouterr().err
    assert "warning: FEATURE_SERVICE_PROT" in err
    assert "FEATURE_SERVICE_PORT " not in err


@pytest.mark.slow  # a Python subprocess: seconds of imports (make test runs it)
def test_bad_variable_exit_status_of_a_real_process() -> None:
    code = (
        "from creditrisk_kit import ServiceSettings\n"
        "from pydantic_settings import SettingsConfigDict\n"
        "class S(ServiceSettings):\n"
        "    model_config = SettingsConfigDict(env_prefix='DRIFT_SERVICE_')\n"
        "S.load_or_exit()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"DRIFT_SERVICE_GRACE_PERIOD_S": "soon", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "DRIFT_SERVICE_GRACE_PERIOD_S: " in result.stderr
    assert "soon" not in result.stderr
