"""Settings: defaults that run out of the box, and bad values that stop start-up loudly."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from service.settings import DEFAULT_MODEL_REPOSITORY, Settings, unknown_variables
from tests.support.service_process import ROOT


def test_defaults_need_nothing_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("FORECAST_"):
            monkeypatch.delenv(key)
    settings = Settings()
    assert settings.store_url == "memory://"
    assert settings.model_repository == DEFAULT_MODEL_REPOSITORY
    assert settings.providers == "auto"


def test_environment_is_read_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORECAST_STORE_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("FORECAST_PROVIDERS", "cpu")
    monkeypatch.setenv("FORECAST_LOG_LEVEL", "DEBUG")
    settings = Settings()
    assert settings.store_url == "redis://127.0.0.1:1/0"
    assert settings.providers == "cpu"
    assert settings.log_level == "debug"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FORECAST_PORT", "eighty"),
        ("FORECAST_PORT", "70000"),
        ("FORECAST_PROVIDERS", "gpu"),
        ("FORECAST_STORE_URL", "postgres://x"),
        ("FORECAST_STREAM_TTL_SECONDS", "0"),
        ("FORECAST_LOG_LEVEL", "loud"),
        ("FORECAST_LOG_FORMAT", "xml"),
        ("FORECAST_OTEL_ENDPOINT", "collector:4318"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_unknown_variables_are_found() -> None:
    env = {"FORECAST_STORE_UR": "x", "FORECAST_PORT": "1", "PATH": "/bin"}
    assert unknown_variables(env) == ["FORECAST_STORE_UR"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FORECAST_PORT": "abc"}, "FORECAST_PORT"),
        ({"FORECAST_STORE_UR": "redis://x"}, "FORECAST_STORE_UR"),
    ],
)
def test_server_refuses_to_start_with_bad_settings(env: dict[str, str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
