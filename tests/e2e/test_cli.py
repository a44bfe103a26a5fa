"""``forecast-service``: the installed console script, run as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service import __version__, cli
from service.settings import Settings
from tests.support.service_process import ROOT, ServiceProcess

SUBCOMMANDS = ("serve", "mqtt", "train", "export", "validate", "compare", "bench")


def script() -> str:
    """The console script pip made for this environment (``pip install -e .``)."""
    found = Path(sys.executable).parent / "forecast-service"
    if not found.exists():
        which = shutil.which("forecast-service")
        assert which, "forecast-service is not installed: python -m pip install -e ."
        return which
    return str(found)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FORECAST_")}
    return subprocess.run(
        [script(), *args],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_help_lists_every_subcommand() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: forecast-service")
    for command in SUBCOMMANDS:
        assert f"\n    {command} " in result.stdout, command


def test_version() -> None:
    result = run("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"forecast-service {__version__}")


@pytest.mark.parametrize("args", [(), ("trian",), ("serve", "--port", "1")])
def test_no_or_wrong_command_is_a_usage_error(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert "usage: forecast-service" in result.stderr
    assert "Uvicorn running" not in result.stderr  # never starts a server instead


def test_serve_help_names_every_setting() -> None:
    result = run("serve", "--help")
    assert result.returncode == 0, result.stderr
    for name in Settings.model_fields:
        assert f"FORECAST_{name.upper()}" in result.stdout


def test_model_commands_take_the_pipelines_own_options() -> None:
    """Delegated as argv: the options are python -m models' (here, train's --kind)."""
    ours = run("train", "--help")
    theirs = subprocess.run(
        [sys.executable, "-m", "models", "train", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ours.returncode == theirs.returncode == 0
    assert ours.stdout == theirs.stdout
    assert "--kind" in ours.stdout


def test_validate_runs_the_model_check() -> None:
    good = run("validate", str(ROOT / "models" / "repository"))
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.startswith("ok")
    bad = run("validate", str(ROOT / "no-such-repository"))
    assert bad.returncode != 0


def test_mqtt_needs_a_broker_and_says_so() -> None:
    helped = run("mqtt", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "--metrics-port" in helped.stdout
    refused = run("mqtt")
    assert refused.returncode == 2
    assert "FORECAST_MQTT_URL" in refused.stderr


def test_bench_help_comes_from_the_benchmark() -> None:
    result = run("bench", "--help")
    assert result.returncode == 0, result.stderr
    assert "--quick" in result.stdout


def test_bench_without_a_source_tree_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "SOURCE_ROOT", tmp_path)
    assert cli.main(["bench", "--quick"]) == 2
    assert "source tree (tests/bench/)" in capsys.readouterr().err


def test_model_commands_without_the_train_extra_say_what_to_install() -> None:
    """Simulated by making torch unimportable, as on a serving-only install."""
    code = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Blocked())
from service.cli import main
sys.exit(main(["train", "taylor", "--epochs", "1", "--quiet"]))
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "stateful-forecast[train]" in result.stderr
    assert "torch" in result.stderr


def test_serve_starts_the_service_as_python_m_service_does(tmp_path: Path) -> None:
    env = {"FORECAST_STORE_URL": "memory://", "FORECAST_LOG_FORMAT": "json"}
    with ServiceProcess(env, command=(script(), "serve"), log=tmp_path / "cli.log") as ours:
        served = httpx.get(f"{ours.url}/v1/models").json()
        ready = httpx.get(f"{ours.url}/health/ready")
        assert ready.status_code == 200
    with ServiceProcess(env) as reference:
        assert httpx.get(f"{reference.url}/v1/models").json() == served
    # Settings reached it: the log is JSON, as FORECAST_LOG_FORMAT asked.
    lines = [json.loads(line) for line in (tmp_path / "cli.log").read_text().splitlines()]
    assert "service.api.auth" in {line["logger"] for line in lines}
