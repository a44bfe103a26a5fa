"""A real Prometheus server for tests, running the repository's scrape config.

``deploy/prometheus/prometheus.yml`` is used with what differs outside Docker swapped: the
replicas' addresses (compose finds them by DNS, see ``render_scrape_config``), its own address,
and the intervals (one second, so a test sees several scrapes quickly).
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

from tests.support.process import ServerProcess, answers_ok, stop_process
from tests.support.redis_server import free_port


def render_scrape_config(
    config: dict[str, Any], *, job: str, targets: list[str], own_port: int
) -> dict[str, Any]:
    """The config with ``job`` scraping ``targets`` and every interval one second.

    The repository's job discovers replicas by DNS (``dns_sd_configs`` on the compose service
    name), which only Docker's embedded DNS can answer: Prometheus asks the nameservers of
    /etc/resolv.conf itself and never reads /etc/hosts. So that job's discovery becomes a
    static list of the test's replicas, keeping its path, scheme and everything else; a
    config whose ``job`` has no DNS discovery is an error, not a silent change of the test.
    """
    rendered = copy.deepcopy(config)
    rendered.setdefault("global", {}).update(scrape_interval="1s", evaluation_interval="1s")
    found = False
    for scrape in rendered["scrape_configs"]:
        if scrape["job_name"] == job and scrape.pop("dns_sd_configs", None):
            scrape["static_configs"] = [{"targets": list(targets)}]
            found = True
        elif scrape.get("static_configs"):
            for static in scrape["static_configs"]:
                static["targets"] = [
                    f"127.0.0.1:{own_port}" if t == "localhost:9090" else t
                    for t in static["targets"]
                ]
    if not found:
        raise ValueError(f"job {job!r} has no dns_sd_configs to replace with the test's replicas")
    return rendered


class PrometheusServer(ServerProcess):
    """``prometheus`` in the foreground with its own data directory, on a free port."""

    name = "prometheus"
    start_timeout = 30.0
    poll_interval = 0.1

    def __init__(self, binary: str, config: dict[str, Any], *, port: int | None = None) -> None:
        self.binary = binary
        self.config = config
        self.port = port if port is not None else free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="prometheus-test-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        path = self.directory / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _launch(self) -> subprocess.Popen[bytes]:
        config = self.directory / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config))
        self._log = (self.directory / "prometheus.log").open("wb")
        self._process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=self._log,
        )
        return self._process

    def _ready(self) -> bool:
        return answers_ok(f"{self.url}/-/ready")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector; a query Prometheus rejects raises."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10.0)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"{expr!r}: {body.get('errorType')}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def close(self) -> None:
        process, self._process = self._process, None
        stop_process(process, grace=15.0)
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.directory, ignore_errors=True)
