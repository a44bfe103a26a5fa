"""Prometheus with the repository's scrape config scrapes a replica, and every dashboard
query runs against what it scraped and shows data.

A real ``prometheus`` (Debian's package) runs the scrape config with the replica's address in
place of compose's DNS discovery, scrapes it while the test sends traffic, and answers each
Grafana panel query as Grafana would send it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.compose import baked_model
from tests.support.dashboard import grafana_to_promql
from tests.support.debian import ensure_tool
from tests.support.prometheus import PrometheusServer, render_scrape_config
from tests.support.redis_server import free_port
from tests.support.service_process import ROOT, ServiceProcess

pytestmark = pytest.mark.slow

PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "stateful-forecast.json"
#: Panels that stay empty while nothing fails (labelled error counters have no series yet).
EMPTY_WHILE_HEALTHY = {"Server errors", "Store errors"}
WAIT_SECONDS = 30.0


def wait_for(prometheus: PrometheusServer, expr: str, what: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        result = prometheus.query(expr)
        if result and all(float(r["value"][1]) > 0 for r in result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {expr} gave {result}\n{prometheus.log()[-2000:]}")
        time.sleep(0.2)


def traffic(base: str, round_: int) -> None:
    """Streams created, observed (with one duplicate, then scored readings) and read, and a
    stateless forecast."""
    model = baked_model()[0]
    stream = f"{base}/v1/streams/mon-{round_}"
    obs = [{"timestamp": 1_800_000_000 + 1800 * i, "value": 30_000.0 + i} for i in range(4)]
    assert httpx.put(stream, json={"model": model}).status_code == 201
    assert httpx.post(f"{stream}/observations", json={"observations": obs}).status_code == 200
    assert httpx.post(f"{stream}/observations", json={"observations": obs[-1:]}).json()["skipped"]
    # Readings after the stream's first forecast: scored (the live accuracy panels).
    later = [{"timestamp": 1_800_000_000 + 1800 * i, "value": 30_000.0 + i} for i in range(4, 6)]
    scored = httpx.post(f"{stream}/observations", json={"observations": later}).json()
    assert [s["scored"] for s in scored["scores"]] == [True, True]
    assert httpx.get(stream).status_code == 200
    series = {"series": [{"observations": obs}]}
    assert httpx.post(f"{base}/v1/models/{model}/forecast", json=series).status_code == 200


def test_prometheus_scrapes_a_replica_and_every_panel_has_data(tmp_path: Path) -> None:
    binary, reason = ensure_tool("prometheus", "prometheus")
    if binary is None:
        pytest.skip(reason)
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    with ServiceProcess({"FORECAST_STORE_URL": "memory://"}, log=tmp_path / "svc.log") as svc:
        port = free_port()
        config = render_scrape_config(
            yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8")),
            job="forecast",
            targets=[f"127.0.0.1:{svc.port}"],
            own_port=port,
        )
        with PrometheusServer(binary, config, port=port) as prometheus:
            up = wait_for(prometheus, 'up{job="forecast"}', "the replica was never scraped")
            assert up[0]["metric"]["instance"] == f"127.0.0.1:{svc.port}"
            # Traffic spread over several scrapes, so rates and quantiles have two points.
            for round_ in range(3):
                traffic(svc.url, round_)
                time.sleep(1.1)
            wait_for(
                prometheus,
                "sum(rate(forecast_observations_skipped_total[1m]))",
                "duplicates never reached Prometheus",
            )
            empty = []
            for panel in dashboard["panels"]:
                for target in panel.get("targets", []):
                    result = prometheus.query(grafana_to_promql(target["expr"]))
                    if not result and panel["title"] not in EMPTY_WHILE_HEALTHY:
                        empty.append(f"{panel['title']}: {target['expr']}")
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
