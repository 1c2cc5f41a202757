"""ServiceSettings: typed fields from the environment; a bad variable exits 2 naming it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from creditrisk_kit import EXIT_BAD_CONFIGURATION, ServiceSettings
from pydantic_settings import SettingsConfigDict


class FeatureServiceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FEATURE_SERVICE_")
    online_store: str = "sqlite"


def test_defaults() -> None:
    settings = FeatureServiceSettings()
    assert settings.max_message_bytes == 4 * 1024 * 1024
    assert settings.port == 50051
    assert settings.bind_address == "0.0.0.0:50051"
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
    assert value in err


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
    assert "DRIFT_SERVICE_GRACE_PERIOD_S='soon'" in result.stderr
