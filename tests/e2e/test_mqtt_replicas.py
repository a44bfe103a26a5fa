"""Two service replicas on one Redis, bridged to one real mosquitto: the acceptance run.

Both replicas subscribe to every reading (the default, no shared subscription) and race to
apply it; the store's compare-and-set lets exactly one win. So: every message reaches both,
each reading is applied once (a message published twice included), its answer is published
once, and the stream ends where the same readings sent over REST end.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import collecting, publish
from tests.support.process import answers_ok, wait_until_ready
from tests.support.redis_server import free_port
from tests.support.service_process import ROOT, ServiceProcess

T0 = 1_800_000_000.0
STREAMS = ["s0", "s1", "s2"]
READINGS = 10
TWICE = 4  # the reading whose message is published twice


def reading(stream: int, i: int) -> dict[str, Any]:
    return {"timestamp": T0 + 3600 * i, "values": [float((i * (stream + 2)) % 7), 15.0 + i]}


def metric(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def until(check: Any, what: str, seconds: float = 20.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
async def test_two_replicas_apply_each_mqtt_reading_once_as_rest_would(
    redis_url: str, mosquitto: Mosquitto, model_repository: Path, tmp_path: Path
) -> None:
    env = {
        "FORECAST_STORE_URL": redis_url,
        "FORECAST_MODEL_REPOSITORY": str(model_repository),
        "FORECAST_MQTT_URL": mosquitto.url,
        "FORECAST_MQTT_DEFAULT_MODEL": "demo-lstm",
    }
    with (
        ServiceProcess(env, log=tmp_path / "a.log") as a,
        ServiceProcess(env, log=tmp_path / "b.log") as b,
    ):
        replicas = [a.url, b.url]
        for base in replicas:
            await until(lambda base=base: metric(base, "forecast_mqtt_connected") == 1, "connect")
        messages = []
        for i in range(READINGS):
            for k, stream in enumerate(STREAMS):
                body = json.dumps(reading(k, i)).encode()
                messages += [(f"sensors/{stream}/readings", body)] * (2 if i == TWICE else 1)
        async with collecting(mosquitto.url, "forecasts/#", "errors/#") as heard:
            await publish(mosquitto.url, messages)
            answers = {s: await heard.wait_for(f"forecasts/{s}", READINGS) for s in STREAMS}
            await asyncio.sleep(0.5)  # an answer published twice would have come by now
            for stream in STREAMS:
                assert sorted(x["seq"] for x in heard.on(f"forecasts/{stream}")) == list(
                    range(1, READINGS + 1)
                )
            assert [t for t, _ in heard.messages if t.startswith("errors/")] == []

        total = len(messages)
        for base in replicas:  # every message reached both replicas
            assert metric(base, "forecast_mqtt_messages_received_total") == total
        assert (
            sum(metric(u, "forecast_mqtt_messages_applied_total") for u in replicas)
            == len(STREAMS) * READINGS
        )
        assert (
            sum(metric(u, "forecast_observations_applied_total") for u in replicas)
            == len(STREAMS) * READINGS
        )
        assert (
            sum(metric(u, "forecast_mqtt_forecasts_published_total") for u in replicas)
            == len(STREAMS) * READINGS
        )

        # The same readings over REST, to other streams, one request per reading.
        async with httpx.AsyncClient(base_url=a.url, timeout=10) as rest:
            full = {"readings": READINGS}
            for k, stream in enumerate(STREAMS):
                twin = f"rest-{stream}"
                assert (
                    await rest.put(f"/v1/streams/{twin}", json={"model": "demo-lstm"})
                ).is_success
                by_seq = {x["seq"]: x for x in answers[stream]}
                for i in range(READINGS):
                    body = {"observations": [reading(k, i)]}
                    answer = (await rest.post(f"/v1/streams/{twin}/observations", json=body)).json()
                    assert answer["forecast"] == by_seq[i + 1]["forecast"]
                mine = (await rest.get(f"/v1/streams/{stream}", params=full)).json()
                theirs = (await rest.get(f"/v1/streams/{twin}", params=full)).json()
                mine.pop("stream_id"), theirs.pop("stream_id")
                assert mine == theirs


def test_forecast_service_mqtt_runs_the_bridge_alone(
    mosquitto: Mosquitto, model_repository: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        "FORECAST_MODEL_REPOSITORY": str(model_repository),
        "FORECAST_PROVIDERS": "cpu",
        "FORECAST_MQTT_URL": mosquitto.url,
        "FORECAST_MQTT_DEFAULT_MODEL": "demo-gru",
        "PATH": str(Path(sys.executable).parent),
    }
    command = [str(Path(sys.executable).parent / "forecast-service"), "mqtt"]
    with (tmp_path / "mqtt.log").open("wb") as log:
        process = subprocess.Popen(
            [*command, "--metrics-port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_ready(
                process,
                lambda: answers_ok(f"{base}/metrics"),
                name="bridge",
                timeout=60.0,
                interval=0.1,
            )

            async def round_trip() -> Any:
                await until(lambda: metric(base, "forecast_mqtt_connected") == 1, "connect")
                async with collecting(mosquitto.url, "forecasts/pump") as heard:
                    body = json.dumps(reading(0, 0)).encode()
                    await publish(mosquitto.url, [("sensors/pump/readings", body)])
                    return (await heard.wait_for("forecasts/pump", 1))[0]

            answer = asyncio.run(round_trip())
            assert (answer["stream_id"], answer["seq"], answer["applied"]) == ("pump", 1, 1)
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
