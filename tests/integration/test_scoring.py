"""Live accuracy and anomaly flags, end to end on a real Redis.

A known series goes through a running service; the exported ``forecast_score_*`` counters
must equal what a person computes offline from the forecasts the service answered and the
readings that followed them. A 20-sigma spike planted in an otherwise normal series is
flagged on every interface (REST one and several readings, bulk full and summary, WebSocket
full and summary, SSE events, v2 sequence steps, MQTT) and no ordinary reading is; a duplicate is
never scored twice; scoring costs no store command.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from websockets.sync import client as ws_client

from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import collecting, publish
from tests.support.service_process import ServiceProcess
from tests.support.sse import subscribed

T0 = 1_790_000_000.0
HOUR = 3600.0
SIGMA = 0.1
#: The series every interface is fed: normal noise, one 20-sigma spike at ``SPIKE``.
LENGTH, SPIKE = 24, 14
WARM = 8  # readings in each stream's history (PUT)


def series(seed: int) -> np.ndarray:
    values = np.random.default_rng(seed).normal(0.0, SIGMA, LENGTH + WARM)
    values[WARM + SPIKE] = 20 * SIGMA
    return values


def reading(i: int, value: float) -> dict[str, Any]:
    return {"timestamp": T0 + HOUR * i, "values": [float(value), 0.0]}


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def metrics(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every ``forecast_score_*`` and ``forecast_anomalies`` sample, by name and labels."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    text = httpx.get(f"{base}/metrics").text
    for line in text.splitlines():
        match = re.match(r"^(forecast_(?:score_\w+|anomalies)_total)(?:\{(.*)\})? (\S+)$", line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            out[(match.group(1), labels)] = float(match.group(3))
    return out


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


@pytest.fixture
def service(model_repository: Path, redis_url: str, tmp_path: Path) -> Iterator[ServiceProcess]:
    env = {"FORECAST_MODEL_REPOSITORY": str(model_repository), "FORECAST_STORE_URL": redis_url}
    with ServiceProcess(env, log=tmp_path / "service.log") as process:
        yield process


def create(base: str, stream: str, values: np.ndarray) -> dict[str, Any]:
    history = [reading(i, values[i]) for i in range(WARM)]
    r = httpx.put(f"{base}/v1/streams/{stream}", json={"model": "demo-lstm", "history": history})
    assert r.status_code == 201, r.text
    return dict(r.json())


# --- live metrics equal an offline computation ---------------------------------------------


def test_live_metrics_equal_an_offline_computation_of_the_answers(
    service: ServiceProcess,
) -> None:
    base = service.url
    values = series(1)
    answer = create(base, "known", values)
    issued = answer["forecast"]
    # Requests of 1, 2 and 3 readings (steps 1..3 of one forecast), a duplicate, then a gap
    # longer than the horizon (not scored).
    sizes = [1, 2, 3, 1, 2, 1, 3, 1, 1, 2, 3]
    offline: dict[str, float] = defaultdict(float)
    pinball: dict[str, float] = defaultdict(float)
    i = WARM
    last_value = float(np.float32(values[WARM - 1]))
    for size in sizes:
        body = {"observations": [reading(j, values[j]) for j in range(i, i + size)]}
        r = httpx.post(f"{base}/v1/streams/known/observations", json=body)
        assert r.status_code == 200, r.text
        got = r.json()
        assert len(got["scores"]) == size
        steps = {epoch(s["timestamp"]): s for s in issued["steps"]}
        for j, score in zip(range(i, i + size), got["scores"], strict=True):
            y = float(np.float32(values[j]))
            step = steps[T0 + HOUR * j]
            assert score["scored"]
            assert score["step"] == step["step"]
            quantiles = {float(q): v for q, v in step["quantiles"].items()}
            error = y - step["median"]
            assert score["error"] == pytest.approx(error, abs=1e-5)
            offline["readings"] += 1
            offline["abs"] += abs(error)
            offline["squared"] += error * error
            offline["naive"] += abs(y - last_value)
            low, high = quantiles[min(quantiles)], quantiles[max(quantiles)]
            offline["inside"] += low <= y <= high
            assert score["inside"] is (low <= y <= high)
            for q, v in quantiles.items():
                pinball[format(q, "g")] += max(q * (y - v), (q - 1) * (y - v))
        last_value = float(np.float32(values[i + size - 1]))
        issued = got["forecast"]
        i += size
    # A duplicate: skipped, not scored.
    again = httpx.post(
        f"{base}/v1/streams/known/observations", json={"observations": [reading(i - 1, 9.0)]}
    ).json()
    assert again["applied"] == 0
    assert again["scores"] == []
    # Past the horizon (4 steps): applied, not scored, and the answer says so.
    late = httpx.post(
        f"{base}/v1/streams/known/observations", json={"observations": [reading(i + 10, 0.0)]}
    ).json()
    assert late["applied"] == 1
    assert late["scores"][0]["scored"] is False
    assert late["scores"][0]["position"] is None

    samples = metrics(base)
    assert total(samples, "forecast_score_readings_total") == offline["readings"]
    assert total(samples, "forecast_score_unscored_total") == 1
    assert total(samples, "forecast_score_abs_error_total") == pytest.approx(offline["abs"], 1e-4)
    assert total(samples, "forecast_score_squared_error_total") == pytest.approx(
        offline["squared"], 1e-4
    )
    assert total(samples, "forecast_score_naive_abs_error_total") == pytest.approx(
        offline["naive"], 1e-4
    )
    assert total(samples, "forecast_score_inside_interval_total") == offline["inside"]
    for label, loss in pinball.items():
        got = sum(
            v
            for (n, labels), v in samples.items()
            if n == "forecast_score_pinball_total" and ("quantile", label) in labels
        )
        assert got == pytest.approx(loss, 1e-4)
    # Horizon buckets: steps 1 and 2-6 only (three readings a request at most).
    horizons = {
        dict(labels)["horizon"]
        for (n, labels), _ in samples.items()
        if n == "forecast_score_readings_total"
    }
    assert horizons == {"1", "2-6"}
    # The model's page shows this replica's last hour beside the held-out figures.
    live = httpx.get(f"{base}/v1/models/demo-lstm").json()["versions"][0]["live"]
    assert live["scored"] == offline["readings"]
    assert live["mae"] == pytest.approx(offline["abs"] / offline["readings"], 1e-4)
    assert live["relative_mae"] == pytest.approx(offline["abs"] / offline["naive"], 1e-4)
    assert live["coverage"] == pytest.approx(offline["inside"] / offline["readings"])


# --- a planted spike, on every interface ---------------------------------------------------


def flags_rest(base: str, stream: str, values: np.ndarray, per_request: int) -> list[bool]:
    out: list[bool] = []
    for start in range(WARM, WARM + LENGTH, per_request):
        body = {"observations": [reading(j, values[j]) for j in range(start, start + per_request)]}
        got = httpx.post(f"{base}/v1/streams/{stream}/observations", json=body).json()
        assert all(s["scored"] for s in got["scores"]), got
        assert got["anomalies"] == sum(s["anomaly"] for s in got["scores"])
        out += [s["anomaly"] for s in got["scores"]]
    return out


def flags_bulk(base: str, stream: str, values: np.ndarray, detail: str) -> list[bool]:
    out: list[bool] = []
    for j in range(WARM, WARM + LENGTH):
        body = {
            "detail": detail,
            "streams": [{"stream_id": stream, "observations": [reading(j, values[j])]}],
        }
        (answer,) = httpx.post(f"{base}/v1/observations", json=body).json()["results"]
        out += bulk_flags(answer)
    return out


def bulk_flags(answer: dict[str, Any]) -> list[bool]:
    assert answer["status"] == 200, answer
    if answer.get("summary") is not None:
        summary = answer["summary"]
        assert all(p is not None for p in summary["positions"])
        return list(summary["anomaly"])
    return [s["anomaly"] for s in answer["result"]["scores"]]


def flags_ws(base: str, stream: str, values: np.ndarray, detail: str) -> list[bool]:
    out: list[bool] = []
    with ws_client.connect(base.replace("http://", "ws://") + "/v1/ws") as ws:
        for j in range(WARM, WARM + LENGTH):
            item = {"stream_id": stream, "observations": [reading(j, values[j])]}
            ws.send(json.dumps({"detail": detail, "streams": [item]}))
            (answer,) = json.loads(ws.recv(timeout=10))["results"]
            out += bulk_flags(answer)
    return out


def flags_v2(base: str, stream: int, values: np.ndarray) -> list[bool]:
    out: list[bool] = []
    url = f"{base}/v2/models/demo-lstm/infer"

    def step(x: list[list[float]], **parameters: Any) -> dict[str, Any]:
        body = {
            "inputs": [{"name": "x", "shape": [1, len(x), 2], "datatype": "FP32", "data": x}],
            "parameters": {"sequence_id": stream, **parameters},
        }
        r = httpx.post(url, json=body)
        assert r.status_code == 200, r.text
        return dict(r.json())

    start = step([[float(v), 0.0] for v in values[:WARM]], sequence_start=True)
    assert start["parameters"]["scored"] is False
    for j in range(WARM, WARM + LENGTH):
        got = step([[float(values[j]), 0.0]])["parameters"]
        assert got["scored"] is True
        assert 0.0 <= got["quantile_position"] <= 1.0
        out.append(got["anomaly"])
    return out


def test_a_planted_spike_is_flagged_on_every_interface_and_nothing_else(
    service: ServiceProcess,
) -> None:
    base = service.url
    values = series(7)
    expected = [j == SPIKE for j in range(LENGTH)]
    for name in ("one", "several", "bulk", "bulk-summary", "ws", "ws-summary"):
        create(base, name, values)
    with subscribed(f"{base}/v1/streams/one/forecasts", 1 + LENGTH) as events:
        assert flags_rest(base, "one", values, 1) == expected
    assert flags_rest(base, "several", values, 2) == expected
    assert flags_bulk(base, "bulk", values, "full") == expected
    assert flags_bulk(base, "bulk-summary", values, "summary") == expected
    assert flags_ws(base, "ws", values, "full") == expected
    assert flags_ws(base, "ws-summary", values, "summary") == expected
    assert flags_v2(base, 4242, values) == expected
    heard = [s["anomaly"] for e in events[1:] for s in e["data"]["scores"]]
    assert heard == expected
    # The stream shows its last anomaly, and its readings are marked.
    shown = httpx.get(f"{base}/v1/streams/one", params={"readings": LENGTH}).json()
    assert epoch(shown["last_anomaly"]["timestamp"]) == T0 + HOUR * (WARM + SPIKE)
    assert shown["last_anomaly"]["value"] == pytest.approx(20 * SIGMA)
    marked = [epoch(x["timestamp"]) for x in shown["readings"] if x["anomaly"]]
    assert marked == [T0 + HOUR * (WARM + SPIKE)]
    # One anomaly per interface's stream (SSE heard the REST stream's), counted per model.
    assert total(metrics(base), "forecast_anomalies_total") == 7


async def test_the_spike_is_flagged_in_what_mqtt_publishes(
    model_repository: Path, redis_url: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """The MQTT bridge publishes the answers the engine made, scores and flags included."""
    env = {
        "FORECAST_MODEL_REPOSITORY": str(model_repository),
        "FORECAST_STORE_URL": redis_url,
        "FORECAST_MQTT_URL": mosquitto.url,
    }
    values = series(7)
    with ServiceProcess(env, log=tmp_path / "service.log") as process:
        create(process.url, "mqtt", values)
        async with collecting(mosquitto.url, "forecasts/mqtt", "errors/#") as heard:
            messages = [
                ("sensors/mqtt/readings", json.dumps(reading(j, values[j])).encode())
                for j in range(WARM, WARM + LENGTH)
            ]
            await asyncio.sleep(0.5)  # the subscription above is in before the first reading
            await publish(mosquitto.url, messages)
            answers = await heard.wait_for("forecasts/mqtt", LENGTH, within=30.0)
    assert heard.on("errors/mqtt") == []
    assert [a["seq"] for a in answers] == list(range(WARM + 1, WARM + LENGTH + 1))
    assert [s["anomaly"] for a in answers for s in a["scores"]] == [
        j == SPIKE for j in range(LENGTH)
    ]
    assert [a["anomalies"] for a in answers] == [int(j == SPIKE) for j in range(LENGTH)]


def test_a_duplicate_is_never_scored_twice(service: ServiceProcess) -> None:
    base = service.url
    values = series(3)
    create(base, "dup", values)
    body = {"observations": [reading(WARM, values[WARM])]}
    first = httpx.post(f"{base}/v1/streams/dup/observations", json=body).json()
    assert [s["scored"] for s in first["scores"]] == [True]
    before = metrics(base)
    for _ in range(3):
        again = httpx.post(f"{base}/v1/streams/dup/observations", json=body).json()
        assert again["applied"] == 0
        assert again["scores"] == []
    bulk = {"streams": [{"stream_id": "dup", "observations": body["observations"]}]}
    (answer,) = httpx.post(f"{base}/v1/observations", json=bulk).json()["results"]
    assert answer["result"]["scores"] == []
    assert metrics(base) == before


# --- no store round trips ------------------------------------------------------------------


def commandstats(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name: int(v["calls"]) for name, v in stats.items()}


@pytest.mark.parametrize("detail", ["full", "summary"])
def test_scoring_adds_no_store_command(
    model_repository: Path, redis_url: str, tmp_path: Path, detail: str
) -> None:
    """The same requests with scoring on and off send the same Redis commands."""
    client = redis.Redis.from_url(redis_url)
    calls: dict[str, dict[str, int]] = {}
    scored: dict[str, float] = {}
    values = series(5)
    for mode in ("on", "off"):
        client.flushall()
        client.script_flush()  # each service loads its scripts alike (a loaded one stays)
        env = {
            "FORECAST_MODEL_REPOSITORY": str(model_repository),
            "FORECAST_STORE_URL": redis_url,
            "FORECAST_SCORING": mode,
        }
        with ServiceProcess(env, log=tmp_path / f"{mode}.log") as process:
            base = process.url
            for k in range(4):
                create(base, f"s{k}", values)
            client.config_resetstat()
            for j in range(WARM, WARM + LENGTH):
                body = {
                    "detail": detail,
                    "streams": [
                        {"stream_id": f"s{k}", "observations": [reading(j, values[j])]}
                        for k in range(4)
                    ],
                }
                r = httpx.post(f"{base}/v1/observations", json=body)
                assert all(a["status"] == 200 for a in r.json()["results"])
            calls[mode] = commandstats(client)
            scored[mode] = total(metrics(base), "forecast_score_readings_total")
    client.close()
    assert scored == {"on": 4 * LENGTH, "off": 0}
    # The bus asks Redis who subscribes about once a second (PUBSUB, by the clock, not per
    # request), and this test's own INFO: neither is the observe path's.
    calls = {
        mode: {k: v for k, v in c.items() if not k.startswith(("cmdstat_pubsub", "cmdstat_info"))}
        for mode, c in calls.items()
    }
    assert calls["on"] == calls["off"]
    assert sum(calls["on"].values()) > 0
