"""The service's streaming interfaces through the compose load balancer.

Two replicas with the compose file's settings share one Redis behind nginx with the
repository's site config. A client subscribes to a stream's forecasts (server-sent events) and
sends its observations over a WebSocket, both through nginx; every forecast must reach the
subscriber as it is made, whichever replica made it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support.compose import NGINX_SITE, baked_model, replica_env
from tests.support.debian import ensure_tool
from tests.support.nginx import NginxBalancer
from tests.support.redis_server import RedisServer, redis_available
from tests.support.service_process import ServiceProcess

pytestmark = pytest.mark.slow

START = 1_800_000_000.0
READINGS = 5
TIMEOUT_SECONDS = 20.0


@pytest.fixture
def balanced(tmp_path: Path) -> Iterator[NginxBalancer]:
    if not redis_available():
        pytest.skip("redis-server / redis-cli are not installed")
    binary, reason = ensure_tool("nginx", "nginx-light")
    if binary is None:
        pytest.skip(reason)
    with RedisServer() as redis_server:
        env = replica_env(redis_server.url)
        with (
            ServiceProcess(env, log=tmp_path / "a.log") as a,
            ServiceProcess(env, log=tmp_path / "b.log") as b,
            NginxBalancer(binary, NGINX_SITE, [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]) as lb,
        ):
            yield lb


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a server-sent event stream; comments are skipped."""
    event, data = "message", ""
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data += line.removeprefix("data:").strip()
        elif not line and data:
            yield event, json.loads(data)
            event, data = "message", ""


async def test_websocket_in_and_server_sent_events_out_through_nginx(
    balanced: NginxBalancer,
) -> None:
    base = balanced.url
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as http:
        r = await http.put(f"{base}/v1/streams/live-1", json={"model": baked_model()[0]})
        assert r.status_code == 201, r.text
        async with http.stream("GET", f"{base}/v1/streams/live-1/forecasts") as sse:
            assert sse.status_code == 200
            assert sse.headers["content-type"].startswith("text/event-stream")
            events = sse_events(sse)
            kind, snapshot = await asyncio.wait_for(anext(events), TIMEOUT_SECONDS)
            assert (kind, snapshot["seq"]) == ("snapshot", 0)

            ws_url = base.replace("http://", "ws://") + "/v1/ws"
            async with connect(ws_url, open_timeout=TIMEOUT_SECONDS) as socket:
                for i in range(READINGS):
                    reading = {"timestamp": START + 1800.0 * i, "value": 30_000.0 + 100.0 * i}
                    await socket.send(
                        json.dumps({"stream_id": "live-1", "observations": [reading]})
                    )
                    message = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT_SECONDS))
                    assert message["status"] == 200, message
                    answer = message["result"]
                    assert answer["seq"] == i + 1
                    # Each forecast reaches the subscriber before the next reading is sent:
                    # nothing on the way (nginx included) holds events back.
                    kind, event = await asyncio.wait_for(anext(events), TIMEOUT_SECONDS)
                    assert kind == "forecast"
                    assert event["seq"] == i + 1
                    assert event["forecast"] == answer["forecast"]
