"""The deployment files are checked here, since no Docker engine runs in these tests.

The compose files are validated against the Compose Specification's JSON schema (vendored in
``tests/e2e/compose-spec``), every file they or the Dockerfiles name must exist (and pass the
``.dockerignore``), every ``FORECAST_*`` variable they set must be a real setting, the pieces
must point at each other (service name, port, data source uid, mount paths), Prometheus's own
checker must accept the scrape config, and every metric the Grafana dashboard queries must be
one a running service exports.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from service.settings import Settings
from tests.support.compose import baked_model
from tests.support.dashboard import (
    dashboard_metrics,
    exported_metric_names,
    grafana_to_promql,
    promql_metrics,
    targets,
)
from tests.support.debian import ensure_tool
from tests.support.service_process import ROOT, ServiceProcess
from tests.support.settings_env import settings_from

COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_GPU = ROOT / "docker-compose.gpu.yml"
COMPOSE_FILES = [COMPOSE, COMPOSE_GPU]
DOCKERFILES = [ROOT / "deploy" / "Dockerfile", ROOT / "deploy" / "Dockerfile.gpu"]
SCHEMA = Path(__file__).parent / "compose-spec" / "compose-spec.json"
NGINX_SITE = ROOT / "deploy" / "nginx" / "forecast.conf"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "stateful-forecast.json"

#: Series Prometheus makes itself for every target; no service exports them.
PROMETHEUS_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name} is not a mapping"
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment in either compose syntax (mapping or ``KEY=VALUE`` list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


# --- The Compose Specification ---------------------------------------------------------------


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_follows_the_compose_specification(path: Path) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(load_yaml(path))
    ]
    assert not errors, "\n".join(errors)


def test_the_schema_rejects_what_compose_rejects(compose: dict[str, Any]) -> None:
    """The vendored schema really constrains services: a misspelt key or a wrong type fails."""
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    misspelt = json.loads(json.dumps(compose))
    misspelt["services"]["forecast"]["deploy"]["replica"] = 2
    assert any("'replica'" in e.message for e in validator.iter_errors(misspelt))
    mistyped = json.loads(json.dumps(compose))
    mistyped["services"]["redis"]["healthcheck"]["interval"] = 5
    assert any("not of type 'string'" in e.message for e in validator.iter_errors(mistyped))


# --- Files named by the compose files and Dockerfiles ----------------------------------------


def _bind_sources(service: dict[str, Any]) -> Iterator[str]:
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/", "~")):
                yield source
        elif volume.get("type") == "bind":
            yield volume["source"]


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_file_the_compose_file_names_exists(path: Path) -> None:
    spec = load_yaml(path)
    named: list[Path] = []
    for service in spec["services"].values():
        build = service.get("build")
        if isinstance(build, str):
            build = {"context": build}
        if build is not None:
            context = ROOT / build.get("context", ".")
            named += [context, context / build.get("dockerfile", "Dockerfile")]
        named += [ROOT / source for source in _bind_sources(service)]
        env_files = service.get("env_file", [])
        named += [ROOT / f for f in ([env_files] if isinstance(env_files, str) else env_files)]
    for section in ("configs", "secrets"):
        named += [ROOT / item["file"] for item in spec.get(section, {}).values() if "file" in item]
    assert named, "the compose file names no file at all: the check would be empty"
    missing = [str(p.relative_to(ROOT)) for p in named if not p.exists()]
    assert not missing, f"{path.name} names files that do not exist: {missing}"


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(.dockerignore) rules in order: (excluded?, pattern); the last match wins."""
    rules = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        for part in re.split(r"(\*\*/?|\*|\?)", pattern):
            if part.startswith("**"):
                regex += ".*"
            elif part == "*":
                regex += "[^/]*"
            elif part == "?":
                regex += "[^/]"
            else:
                regex += re.escape(part)
        rules.append((not negated, re.compile(regex)))
    return rules


def _in_build_context(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = relative.split("/")
    excluded = False
    for exclude, regex in rules:
        # A pattern that matches a parent directory applies to everything below it.
        if any(regex.fullmatch("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            excluded = exclude
    return not excluded


def _copy_sources(dockerfile: Path) -> list[str]:
    sources = []
    for line in re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8")).splitlines():
        words = line.split()
        if not words or words[0].upper() not in {"COPY", "ADD"}:
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]):
            continue
        sources += args[:-1]
    return sources


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_file_the_dockerfile_copies_is_in_the_build_context(dockerfile: Path) -> None:
    rules = _dockerignore_rules()
    sources = _copy_sources(dockerfile)
    assert "models/repository" in sources, "the demo models must be baked into the image"
    for source in sources:
        files = [p for p in ROOT.glob(source) if p.is_file()] + [
            f for p in ROOT.glob(source) if p.is_dir() for f in p.rglob("*") if f.is_file()
        ]
        kept = [f for f in files if _in_build_context(str(f.relative_to(ROOT)), rules)]
        assert kept, f"COPY {source} in {dockerfile.name} matches nothing in the build context"
    assert not _in_build_context("tests/conftest.py", rules), ".dockerignore lets tests in"
    assert not _in_build_context(".git/HEAD", rules), ".dockerignore lets .git in"


def _dockerfile_env(dockerfile: Path) -> dict[str, str]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip().upper().startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


# --- Settings ----------------------------------------------------------------------------------


def test_every_forecast_variable_is_a_real_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    sources: dict[str, dict[str, str]] = {}
    for path in COMPOSE_FILES:
        for name, service in load_yaml(path)["services"].items():
            sources[f"{path.name}:{name}"] = environment(service)
    for dockerfile in DOCKERFILES:
        sources[dockerfile.name] = _dockerfile_env(dockerfile)
    fields = {f"FORECAST_{name.upper()}" for name in Settings.model_fields}
    seen = 0
    for where, env in sources.items():
        ours = {k: v for k, v in env.items() if k.upper().startswith("FORECAST_")}
        unknown = sorted(set(map(str.upper, ours)) - fields)
        assert not unknown, f"{where} sets variables the service does not read: {unknown}"
        # The values must parse too: start-up would refuse them otherwise.
        settings_from(ours, monkeypatch)
        seen += len(ours)
    assert seen >= 10


# --- The pieces point at each other --------------------------------------------------------------


def test_compose_pieces_agree(compose: dict[str, Any]) -> None:
    services = compose["services"]
    redis, forecast = services["redis"], services["forecast"]
    env = environment(forecast)
    port = int(env["FORECAST_PORT"])

    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert "healthcheck" in redis
    assert forecast["depends_on"]["redis"]["condition"] == "service_healthy"
    assert env["FORECAST_STORE_URL"].startswith("redis://redis:")
    assert env["FORECAST_HOST"] == "0.0.0.0"
    assert forecast["deploy"]["replicas"] >= 2
    probe = " ".join(forecast["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/health/ready" in probe

    # The image bakes the demo models where the compose file says the repository is.
    dockerfile = ROOT / forecast["build"].get("context", ".") / forecast["build"]["dockerfile"]
    assert f"COPY models/repository {env['FORECAST_MODEL_REPOSITORY']}" in dockerfile.read_text()

    # nginx balances the compose service on the service's port and is published.
    upstream = re.search(r"upstream\s+\S+\s*\{[^}]*server\s+(\S+?):(\d+)", NGINX_SITE.read_text())
    assert upstream is not None
    assert (upstream[1], int(upstream[2])) == ("forecast", port)
    lb = services["lb"]
    mounts = {s.split(":")[1] for s in lb["volumes"]}
    assert "/etc/nginx/conf.d/default.conf" in mounts
    listen = re.search(r"^\s*listen\s+(\d+);", NGINX_SITE.read_text(), re.MULTILINE)
    assert listen is not None
    assert any(str(p).endswith(f":{listen[1]}") for p in lb["ports"])

    # Prometheus discovers the replicas by the compose service name and port.
    scrape = load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]
    job = next(j for j in scrape if j["job_name"] == "forecast")
    assert job["dns_sd_configs"][0]["names"] == ["forecast"]
    assert job["dns_sd_configs"][0]["port"] == port
    prometheus_mounts = dict(s.split(":")[:2] for s in services["prometheus"]["volumes"])
    assert (
        prometheus_mounts["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    )

    # Grafana: the provisioned data source is the dashboard's, the provider path is mounted.
    grafana_mounts = dict(s.split(":")[:2] for s in services["grafana"]["volumes"])
    source = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    datasource = source["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "forecast.yml")["providers"][0]
    assert grafana_mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert grafana_mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    uids = {t["datasource"]["uid"] for t in targets(dashboard)}
    assert uids == {datasource["uid"]}


def test_gpu_override_runs_the_cuda_image_with_a_gpu_reserved() -> None:
    forecast = load_yaml(COMPOSE_GPU)["services"]["forecast"]
    assert environment(forecast)["FORECAST_PROVIDERS"] == "cuda"
    assert forecast["build"]["dockerfile"] == "deploy/Dockerfile.gpu"
    devices = forecast["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)
    assert "FROM ${CUDA_IMAGE}" in (ROOT / "deploy" / "Dockerfile.gpu").read_text()


# --- Prometheus ----------------------------------------------------------------------------------


def test_promtool_accepts_the_scrape_config() -> None:
    promtool, reason = ensure_tool("promtool", "prometheus")
    if promtool is None:
        pytest.skip(reason)
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- Grafana -------------------------------------------------------------------------------------


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every panel query (as recording rules), so a typo cannot hide."""
    promtool, reason = ensure_tool("promtool", "prometheus")
    if promtool is None:
        pytest.skip(reason)
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [grafana_to_promql(t["expr"]) for t in targets(dashboard)]
    rules: dict[str, Any] = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    good = tmp_path / "dashboard-rules.yml"
    good.write_text(yaml.safe_dump(rules))
    bad = tmp_path / "broken-rules.yml"
    rules["groups"][0]["rules"][0]["expr"] = exprs[0] + ")"
    bad.write_text(yaml.safe_dump(rules))

    def check(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [promtool, "check", "rules", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    result = check(good)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout
    assert check(bad).returncode != 0, "promtool accepted a broken query: the check is void"


def test_promql_metric_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, op) (rate(a_bucket{op=~"get|set", x="b c"}[5m])))'
        " / on (op) group_left sum without (le) (b_total) > bool 0 or vector(1) offset 5m"
    )
    assert promql_metrics(expr) == {"a_bucket", "b_total"}


def test_dashboard_queries_only_metrics_the_service_exports(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    with ServiceProcess({"FORECAST_STORE_URL": "memory://"}, log=tmp_path / "service.log") as svc:
        base = svc.url
        model = baked_model()[0]
        stream = f"{base}/v1/streams/dash-1"
        obs = [{"timestamp": 1_800_000_000 + 1800 * i, "value": 30_000.0 + i} for i in range(3)]
        assert httpx.put(stream, json={"model": model}).status_code == 201
        assert httpx.post(f"{stream}/observations", json={"observations": obs}).status_code == 200
        again = httpx.post(f"{stream}/observations", json={"observations": obs[-1:]})
        assert again.json()["skipped"], "a repeated timestamp must be skipped"
        series = {"series": [{"observations": obs}]}
        assert httpx.post(f"{base}/v1/models/{model}/forecast", json=series).status_code == 200
        assert httpx.delete(stream).status_code == 204
        exported = exported_metric_names(httpx.get(f"{base}/metrics").text)

    queried = dashboard_metrics(dashboard)
    # What the issue asks the dashboard to show.
    assert {
        "forecast_http_requests_total",
        "forecast_http_request_duration_seconds_bucket",
        "forecast_inference_batch_rows_bucket",
        "forecast_inference_duration_seconds_bucket",
        "forecast_store_duration_seconds_bucket",
        "forecast_store_errors_total",
        "forecast_active_streams",
        "forecast_observations_skipped_total",
    } <= queried
    unknown = sorted(queried - exported - PROMETHEUS_SYNTHETIC)
    assert not unknown, f"the dashboard queries metrics the service does not export: {unknown}"
    panel_ids = [p["id"] for p in dashboard["panels"]]
    assert len(panel_ids) == len(set(panel_ids)), "panel ids must be unique"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_image_takes_the_packages_extras(dockerfile: Path) -> None:
    """``--build-arg EXTRAS=otel`` installs ``.[otel]``; no EXTRAS installs plain ``.``."""
    text = dockerfile.read_text(encoding="utf-8")
    assert re.search(r"^ARG EXTRAS=$", text, re.MULTILINE)
    (target,) = re.findall(r'pip install ("\.\$\{EXTRAS[^"]*")', text)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert "otel" in extras
    for value, expected in [("", "."), ("otel", ".[otel]")]:
        shown = subprocess.run(
            ["sh", "-c", f"printf %s {target}"],
            env={"EXTRAS": value},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert shown == expected
