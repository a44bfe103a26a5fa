"""A server-sent events subscription outlives its keep-alive comments.

The keep-alive used to cancel the subscription's pending read, which ended the subscription
for good: a stream quiet for longer than the keep-alive period never heard another update.
The period is a setting, so this runs in seconds instead of minutes.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.service_process import ServiceProcess
from tests.support.sse import subscribed

T0 = 1_800_000_000.0


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_updates_arrive_after_many_keep_alives(
    store: str, model_repository: Path, redis_url: str, tmp_path: Path
) -> None:
    env = {
        "FORECAST_MODEL_REPOSITORY": str(model_repository),
        "FORECAST_SSE_KEEPALIVE_SECONDS": "0.2",
        "FORECAST_STORE_URL": redis_url if store == "redis" else "memory://",
    }
    with ServiceProcess(env, log=tmp_path / "service.log") as service:
        url = f"{service.url}/v1/streams/quiet"
        assert httpx.put(url, json={"model": "demo-lstm"}).status_code == 201
        with httpx.stream("GET", f"{url}/forecasts", timeout=10.0) as response:
            lines = response.iter_lines()
            seen: list[str] = []
            while sum(line.startswith(":") for line in seen) < 3:  # three keep-alives in a row
                seen.append(next(lines))
        # A keep-alive is a bare comment: a data line would be an empty message to EventSource.
        assert [line for line in seen if line.startswith("data:")] == [seen[1]]
        assert seen[0] == "event: snapshot"
        with subscribed(f"{url}/forecasts", 2) as events:
            time.sleep(1.5)  # seven keep-alive periods of silence
            reading = {"timestamp": T0, "values": [1.0, 20.0]}
            answer = httpx.post(f"{url}/observations", json={"observations": [reading]})
            assert answer.status_code == 200, answer.text
    assert [e["event"] for e in events] == ["snapshot", "forecast"]
    assert events[1]["data"]["seq"] == 1
