"""The MQTT bridge in an app, against a real mosquitto: readings in, forecasts and errors out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from service.app import create_app
from service.mqtt.bridge import Bridge
from service.settings import Settings
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import collecting, publish

T0 = 1_800_000_000.0
WAIT = 15.0


def reading(i: int) -> dict[str, Any]:
    return {"timestamp": T0 + 3600 * i, "values": [float(i % 5), 20.0 - i * 0.1]}


def payload(*indices: int) -> bytes:
    items = [reading(i) for i in indices]
    return json.dumps(items[0] if len(items) == 1 else items).encode()


@asynccontextmanager
async def bridged_app(
    repository: Path, broker: Mosquitto, **overrides: Any
) -> AsyncIterator[tuple[AsyncTestClient[Any], Bridge]]:
    settings = Settings(
        model_repository=repository, providers="cpu", mqtt_url=broker.url, **overrides
    )
    app = create_app(settings)
    async with AsyncTestClient(app=app) as client:
        bridge: Bridge = app.state.mqtt
        await connected(bridge)
        yield client, bridge


async def connected(bridge: Bridge) -> None:
    """Wait until the bridge is subscribed. Polled: it runs on the test client's own loop."""
    for _ in range(int(WAIT / 0.02)):
        if bridge.connected:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the MQTT bridge did not connect")


async def settled(client: AsyncTestClient[Any], line_start: str, expected: float) -> float:
    """The metric once it reaches ``expected`` (counters settle after acknowledgements), or
    its value when WAIT has passed."""
    for _ in range(int(WAIT / 0.05)):
        value = await metric(client, line_start)
        if value == expected:
            break
        await asyncio.sleep(0.05)
    return value


async def metric(client: AsyncTestClient[Any], line_start: str) -> float:
    text = (await client.get("/metrics")).text
    values = [
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)
    ]
    return sum(values)


async def test_readings_in_forecasts_out_each_applied_once_as_over_rest(
    model_repository: Path, mosquitto: Mosquitto
) -> None:
    async with (
        bridged_app(model_repository, mosquitto, mqtt_default_model="demo-lstm") as (client, _),
        collecting(mosquitto.url, "forecasts/#", "errors/#") as heard,
    ):
        groups = [(0,), (1,), (2,), (2,), (3, 4)]  # the third message is published twice
        await publish(mosquitto.url, [("sensors/pump/readings", payload(*g)) for g in groups])
        answers = await heard.wait_for("forecasts/pump", 4)
        assert [a["seq"] for a in answers] == [1, 2, 3, 5]
        assert [a["applied"] for a in answers] == [1, 1, 1, 2]
        assert await metric(client, "forecast_mqtt_messages_received_total") == 5
        assert await metric(client, "forecast_mqtt_messages_applied_total") == 4
        assert await metric(client, "forecast_mqtt_messages_skipped_total") == 1
        assert await settled(client, "forecast_mqtt_forecasts_published_total", 4) == 4
        assert heard.on("errors/pump") == []

        # The same readings over REST, to a stream of the same model, answer the same.
        await client.put("/v1/streams/rest", json={"model": "demo-lstm"})
        for group, mqtt_answer in zip([(0,), (1,), (2,), (3, 4)], answers, strict=True):
            body = {"observations": [reading(i) for i in group]}
            rest = (await client.post("/v1/streams/rest/observations", json=body)).json()
            assert rest["forecast"] == mqtt_answer["forecast"]
        states = [(await client.get(f"/v1/streams/{s}")).json() for s in ("pump", "rest")]
        for state in states:
            state.pop("stream_id")
        assert states[0] == states[1]

        # An update made over REST is published too: every answer of the tenant goes out.
        body = {"observations": [reading(5)]}
        over_rest = (await client.post("/v1/streams/pump/observations", json=body)).json()
        assert (await heard.wait_for("forecasts/pump", 5))[-1] == over_rest


async def test_refused_messages_go_to_the_errors_topic_with_their_reason(
    model_repository: Path, mosquitto: Mosquitto
) -> None:
    async with (
        bridged_app(model_repository, mosquitto) as (client, _),
        collecting(mosquitto.url, "forecasts/#", "errors/#") as heard,
    ):
        await client.put("/v1/streams/known", json={"model": "demo-lstm"})
        bad = [
            ("sensors/known/readings", b"{nope"),
            ("sensors/known/readings", b"42"),
            ("sensors/known/readings", b"[]"),
            ("sensors/known/readings", json.dumps({"timestamp": T0}).encode()),
            ("sensors/known/readings", json.dumps({"timestamp": T0, "value": 1.0}).encode()),
            ("sensors/ghost/readings", payload(0)),
            ("sensors/known/readings", payload(0)),  # a good one: the bridge lives on
        ]
        await publish(mosquitto.url, bad)
        errors = await heard.wait_for("errors/known", 5)
        assert [e["code"] for e in errors] == [
            "malformed-body",
            "invalid-input",
            "invalid-input",
            "invalid-input",
            "invalid-input",
        ]
        assert all(e["topic"] == "sensors/known/readings" for e in errors)
        assert "not valid JSON" in errors[0]["detail"]
        assert errors[3]["errors"][0]["key"].startswith("payload")
        assert "2 value(s) per observation" in errors[4]["detail"]
        (ghost,) = await heard.wait_for("errors/ghost", 1)
        assert ghost["code"] == "unknown-stream"
        assert "FORECAST_MQTT_DEFAULT_MODEL" in ghost["detail"]
        (good,) = await heard.wait_for("forecasts/known", 1)
        assert good["seq"] == 1
        assert (await client.get("/v1/streams/ghost")).status_code == 404
        assert (
            await metric(client, 'forecast_mqtt_messages_rejected_total{reason="invalid-input"}')
            == 4
        )


async def test_a_broker_restart_mid_stream_loses_nothing_and_applies_nothing_twice(
    model_repository: Path, mosquitto: Mosquitto
) -> None:
    async with bridged_app(
        model_repository, mosquitto, mqtt_default_model="demo-gru", mqtt_reconnect_max_seconds=0.5
    ) as (client, _):
        async with collecting(mosquitto.url, "forecasts/#") as heard:
            await publish(mosquitto.url, [("sensors/fan/readings", payload(i)) for i in range(3)])
            assert [a["seq"] for a in await heard.wait_for("forecasts/fan", 3)] == [1, 2, 3]
            mosquitto.stop()
        # The broker is away: the HTTP side serves as ever.
        assert (await client.get("/health/ready")).status_code == 200
        await client.put("/v1/streams/meanwhile", json={"model": "demo-gru"})
        body = {"observations": [reading(0)]}
        assert (
            await client.post("/v1/streams/meanwhile/observations", json=body)
        ).status_code == 200
        mosquitto.start()
        assert await settled(client, "forecast_mqtt_connects_total", 2) == 2  # back, subscribed
        async with collecting(mosquitto.url, "forecasts/fan") as heard:
            # The sensor resends everything since its last acknowledged answer, and more.
            await publish(mosquitto.url, [("sensors/fan/readings", payload(i)) for i in range(6)])
            answers = await heard.wait_for("forecasts/fan", 3)
        assert [a["seq"] for a in answers] == [4, 5, 6]
        assert (await client.get("/v1/streams/fan")).json()["seq"] == 6
        assert await metric(client, "forecast_mqtt_messages_skipped_total") == 3


async def test_topics_and_tenant_are_settings(model_repository: Path, mosquitto: Mosquitto) -> None:
    keys = [
        {"key": "plant-a-key-0123456789", "tenant": "plant-a", "role": "read"},
        {"key": "default-key-0123456789", "tenant": "default", "role": "read"},
    ]
    async with (
        bridged_app(
            model_repository,
            mosquitto,
            mqtt_default_model="demo-lstm",
            mqtt_tenant="plant-a",
            mqtt_readings_topic="plant/{stream_id}/+/telemetry",
            mqtt_forecasts_topic="plant/{stream_id}/forecast",
            api_keys=keys,
        ) as (client, _),
        collecting(mosquitto.url, "plant/#") as heard,
    ):
        await publish(
            mosquitto.url,
            [
                ("plant/boiler/line-1/telemetry", payload(0)),
                ("sensors/boiler/readings", payload(1)),
            ],
        )
        (answer,) = await heard.wait_for("plant/boiler/forecast", 1)
        assert answer["stream_id"] == "boiler"
        own = await client.get("/v1/streams/boiler", headers={"X-API-Key": keys[0]["key"]})
        assert own.status_code == 200
        assert own.json()["seq"] == 1  # the reading on the other topic was never subscribed to
        other = await client.get("/v1/streams/boiler", headers={"X-API-Key": keys[1]["key"]})
        assert other.status_code == 404
