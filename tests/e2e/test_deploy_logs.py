"""One request followed by its id through nginx, a replica and back, in JSON log lines.

What the compose file describes runs natively: Redis, two ``python -m service`` replicas with
the compose file's environment (``FORECAST_LOG_FORMAT=json``), and nginx with the repository's
site config, whose access log is JSON too. Each request is then found by its id in nginx's
log, which names the replica that served it, and in that replica's log, and nowhere else.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.compose import NGINX_SITE, baked_model, replica_env
from tests.support.nginx import NginxBalancer
from tests.support.service_process import ServiceProcess

pytestmark = pytest.mark.slow

HEX32 = re.compile(r"[0-9a-f]{32}")


@dataclass
class Deployment:
    nginx: NginxBalancer
    replicas: dict[int, tuple[ServiceProcess, Path]]  # port -> (process, its log file)

    def nginx_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.nginx.access_log().splitlines()]

    def replica_lines(self, port: int) -> list[dict[str, Any]]:
        text = self.replicas[port][1].read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def follow(self, rid: str) -> tuple[dict[str, Any], int, list[dict[str, Any]]]:
        """nginx's line of request ``rid``, the port of the replica it went to, and every
        line that replica logged for it; no other replica may have logged it.

        Both access lines are written just after the answer went out: wait for them.
        """
        deadline = time.monotonic() + 10
        while True:
            edges = [e for e in self.nginx_lines() if e["request_id"] == rid]
            if edges:
                (edge,) = edges
                port = int(edge["upstream"].rsplit(":", 1)[1])
                assert port in self.replicas, edge
                mine = [e for e in self.replica_lines(port) if e.get("request_id") == rid]
                if any(e["logger"] == "service.access" for e in mine):
                    break
            assert time.monotonic() < deadline, f"no access lines for {rid} in time"
            time.sleep(0.02)
        for other in self.replicas:
            if other != port:
                assert not [e for e in self.replica_lines(other) if e.get("request_id") == rid]
        return edge, port, mine


@pytest.fixture
def deployment(nginx_binary: str, redis_url: str, tmp_path: Path) -> Iterator[Deployment]:
    env = replica_env(redis_url)
    assert env["FORECAST_LOG_FORMAT"] == "json", "the compose file asks for JSON logs"
    replicas: dict[int, tuple[ServiceProcess, Path]] = {}
    try:
        for name in ("a", "b"):
            log = tmp_path / f"replica-{name}.log"
            process = ServiceProcess(env, log=log).start()
            replicas[process.port] = (process, log)
        upstreams = [f"127.0.0.1:{port}" for port in replicas]
        with NginxBalancer(nginx_binary, NGINX_SITE, upstreams) as nginx:
            yield Deployment(nginx, replicas)
    finally:
        for process, _ in replicas.values():
            process.stop()


def test_one_request_is_followed_by_its_id(deployment: Deployment) -> None:
    model, _ = baked_model()
    base = deployment.nginx.url
    with httpx.Client(base_url=base, timeout=30) as http:
        # Round robin spreads these over both replicas.
        ids = [f"follow-me-{i}" for i in range(4)]
        for i, rid in enumerate(ids):
            r = http.put(f"/v1/streams/s{i}", json={"model": model}, headers={"X-Request-ID": rid})
            assert r.status_code == 201, r.text
            assert r.headers["x-request-id"] == rid, "the id came back through nginx"
        # A request without an id gets nginx's, and the replica uses that same one.
        r = http.get("/v1/streams/s0")
        assert r.status_code == 200
        made = r.headers["x-request-id"]
        assert HEX32.fullmatch(made)
        # A rejected request: the id is in the problem body too.
        r = http.post(
            "/v1/streams/s0/observations",
            json={"observations": [{"timestamp": "not a time", "value": 1.0}]},
            headers={"X-Request-ID": "rejected-1"},
        )
        assert r.status_code == 422
        assert r.json()["request_id"] == "rejected-1" == r.headers["x-request-id"]
        # An id nginx will not pass on (it could forge log lines) is replaced by its own.
        r = http.get("/v1/streams/s0", headers={"X-Request-ID": "no spaces allowed"})
        replaced = r.headers["x-request-id"]
        assert HEX32.fullmatch(replaced)

    served_by = set()
    for rid, status in [*((rid, 201) for rid in ids), (made, 200), ("rejected-1", 422)]:
        edge, port, lines = deployment.follow(rid)
        served_by.add(port)
        assert edge["status"] == status
        assert edge["upstream_status"] == str(status)
        (access,) = [e for e in lines if e["logger"] == "service.access"]
        assert access["status"] == status
        assert access["path"] == edge["uri"].split("?")[0]
        assert access["method"] == edge["method"]
    assert served_by == set(deployment.replicas), "both replicas should have served some"
    assert not [e for e in deployment.nginx_lines() if e["request_id"] == "no spaces allowed"]
    deployment.follow(replaced)


def test_a_log_line_from_inside_the_request_carries_the_id(deployment: Deployment) -> None:
    """Unloading a version is logged by the registry, in a worker thread, on one replica."""
    model, version_dir = baked_model()
    path = f"/v1/admin/models/{model}/versions/{version_dir.name}/unload"
    r = httpx.post(deployment.nginx.url + path, headers={"X-Request-ID": "unload-e2e"}, timeout=30)
    assert r.status_code == 200, r.text
    edge, _, lines = deployment.follow("unload-e2e")
    assert edge["status"] == 200
    loggers = [e["logger"] for e in lines]
    assert "service.registry" in loggers
    assert loggers[-1] == "service.access"
    retired = next(e for e in lines if e["logger"] == "service.registry")
    assert model in retired["message"]
    assert retired["level"] == "INFO"


def test_every_line_every_process_wrote_is_one_json_object(deployment: Deployment) -> None:
    """Start-up lines from uvicorn and the service included, not only request lines."""
    r = httpx.get(deployment.nginx.url + "/v1/models", timeout=30)
    assert r.status_code == 200
    deployment.follow(r.headers["x-request-id"])  # waits for both access lines
    for port, (_, log) in deployment.replicas.items():
        text = log.read_text(encoding="utf-8")
        entries = [json.loads(line) for line in text.splitlines()]  # raises on a stray line
        assert entries, f"replica {port} logged nothing"
        loggers = {e["logger"] for e in entries}
        assert {"uvicorn.error", "service"} <= loggers, loggers
        for entry in entries:
            assert {"time", "level", "logger", "message"} <= set(entry)
