"""forecast_client against the real service as a process (``python -m service``).

Every call goes over a socket to the real server: REST, the WebSocket and server-sent events,
the sync client and the async one, with API keys enforced. The retries are shown where they
matter, on a real Redis: a frozen store (503 with Retry-After) and a restarted service
(connections refused) are waited out, and the reading lands exactly once.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from forecast_client import (
    AsyncForecastClient,
    Forbidden,
    ForecastClient,
    InvalidInput,
    ModelVersion,
    NotFound,
    Reading,
    Retry,
    ServiceUnreachable,
    StreamEvent,
    Unauthorized,
)
from tests.support.redis_server import RedisServer
from tests.support.service_process import ServiceProcess

pytestmark = pytest.mark.slow

WRITE = "client-acme-writer-0123"
READ = "client-acme-reader-0123"
KEYS = json.dumps(
    [
        {"key": WRITE, "tenant": "acme", "role": "write"},
        {"key": READ, "tenant": "acme", "role": "read"},
    ]
)
T0 = 1_790_006_400.0
#: Patient enough for a service restart (it loads its models again) on a loaded machine.
PATIENT = Retry(attempts=80, backoff=0.1, max_backoff=0.5)


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    with ServiceProcess({"FORECAST_API_KEYS": KEYS}) as running:
        yield running


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[ForecastClient]:
    with ForecastClient(service.url, api_key=WRITE) as c:
        yield c


@pytest.fixture(scope="module")
def model(service: ServiceProcess) -> ModelVersion:
    with ForecastClient(service.url, api_key=READ) as c:
        return c.models()[0]


def readings(model: ModelVersion, start: int, count: int) -> list[Reading]:
    width = len(model.features)
    return [
        Reading(T0 + model.frequency * i, [30_000.0 + 500 * (i % 7) + k for k in range(width)])
        for i in range(start, start + count)
    ]


def at(reading: Reading) -> datetime:
    assert isinstance(reading.timestamp, float)
    return datetime.fromtimestamp(reading.timestamp, tz=UTC)


def test_a_stream_from_creation_to_deletion(client: ForecastClient, model: ModelVersion) -> None:
    created = client.create_stream("life", model.name, history=readings(model, 0, 10))
    assert (created.seq, created.applied, created.model.name) == (10, 10, model.name)
    assert created.forecast is not None
    assert len(created.forecast.steps) == model.horizon

    answer = client.observe("life", readings(model, 10, 2))
    assert (answer.seq, answer.applied, answer.skipped) == (12, 2, ())
    assert answer.forecast is not None
    assert answer.forecast.origin == at(readings(model, 11, 1)[0])
    assert set(answer.forecast.steps[0].quantiles) == set(model.quantiles)

    # What a retry of a request that had landed looks like: skipped, never applied twice.
    again = client.observe("life", readings(model, 11, 1))
    assert (again.seq, again.applied, len(again.skipped)) == (12, 0, 1)

    stream = client.get_stream("life", readings=3)
    assert stream.seq == 12
    assert stream.forecast == answer.forecast
    assert stream.readings is not None
    assert [list(r.values) for r in stream.readings] == [r.values for r in readings(model, 9, 3)]
    assert client.get_stream("life").readings is None

    client.delete_stream("life")
    with pytest.raises(NotFound) as gone:
        client.get_stream("life")
    error = gone.value
    assert (error.status, error.code, error.field) == (404, "unknown-stream", "stream_id")
    assert "does not exist" in error.detail
    assert error.title == "Unknown stream"
    assert error.request_id
    with pytest.raises(NotFound):
        client.delete_stream("life")  # not a retry: a 404 is an answer


def test_scores_anomalies_and_live_accuracy_reach_the_client(
    client: ForecastClient, model: ModelVersion
) -> None:
    client.create_stream("scored", model.name, history=readings(model, 0, 10))
    plain = client.observe("scored", readings(model, 10, 1))
    (score,) = plain.scores
    assert score.scored
    assert score.step == 1
    assert score.position is not None
    assert score.timestamp == at(readings(model, 10, 1)[0])
    spike = Reading(T0 + model.frequency * 11, [300_000.0] * len(model.features))
    flagged = client.observe("scored", [spike])
    assert [s.anomaly for s in flagged.anomalies] == [True]
    assert flagged.scores[0].position == 1.0

    stream = client.get_stream("scored", readings=2)
    assert stream.last_anomaly is not None
    assert stream.last_anomaly.timestamp == at(spike)
    assert stream.last_anomaly.value == 300_000.0
    assert stream.readings is not None
    assert [r.anomaly for r in stream.readings] == [score.anomaly, True]
    (answer,) = client.observe_bulk({"scored": readings(model, 12, 1)}, detail="summary")
    assert answer.summary is not None
    assert len(answer.summary.positions) == len(answer.summary.anomaly) == 1

    (live,) = [v.live for v in client.model(model.name) if v.version == model.version]
    assert live is not None
    assert live.scored >= 3
    assert live.anomalies >= 1


def test_any_stream_id_travels_as_one_path_segment(
    client: ForecastClient, model: ModelVersion
) -> None:
    name = "plant/line 1 Kühlhaus?x=1#2"
    assert client.create_stream(name, model.name).stream_id == name
    assert client.observe(name, readings(model, 0, 1)).stream_id == name
    events = client.subscribe(name)
    assert next(events).stream.stream_id == name
    events.close()
    client.delete_stream(name)
    with pytest.raises(NotFound):
        client.get_stream(name)


def test_refusals_are_typed_with_the_services_problem(
    service: ServiceProcess, client: ForecastClient, model: ModelVersion
) -> None:
    client.create_stream("strict", model.name)
    too_wide = [Reading(T0, [1.0] * (len(model.features) + 1))]
    with pytest.raises(InvalidInput) as invalid:
        client.observe("strict", too_wide)
    assert invalid.value.status == 422
    assert invalid.value.field is not None
    assert invalid.value.field.startswith("observations")
    with pytest.raises(NotFound) as unknown:
        client.forecast("no-such-model", [readings(model, 0, 3)])
    assert unknown.value.code == "unknown-model"
    with ForecastClient(service.url) as anonymous, pytest.raises(Unauthorized):
        anonymous.get_stream("strict")
    with ForecastClient(service.url, api_key=READ) as reader:
        assert reader.get_stream("strict").seq == 0
        with pytest.raises(Forbidden):
            reader.observe("strict", readings(model, 0, 1))


def test_bulk_answers_each_stream_on_its_own(client: ForecastClient, model: ModelVersion) -> None:
    for sid in ("b1", "b2"):
        client.create_stream(sid, model.name)
    answers = client.observe_bulk(
        {"b1": readings(model, 0, 2), "missing": readings(model, 0, 1), "b2": readings(model, 0, 1)}
    )
    assert [(a.stream_id, a.status) for a in answers] == [
        ("b1", 200),
        ("missing", 404),
        ("b2", 200),
    ]
    assert answers[0].unwrap().seq == 2
    assert isinstance(answers[1].error, NotFound)
    with pytest.raises(NotFound):
        answers[1].unwrap()
    summary = client.observe_bulk([("b1", readings(model, 2, 1))], detail="summary")[0].summary
    assert summary is not None
    assert (summary.seq, summary.applied, summary.skipped) == (3, 1, 0)
    assert summary.median is not None
    assert len(summary.median) == model.horizon


def test_a_stateless_forecast_equals_the_streams_after_the_same_readings(
    client: ForecastClient, model: ModelVersion
) -> None:
    series = readings(model, 0, 30)
    stream = client.create_stream("twin", model.name, history=series)
    first, second = client.forecast(model.name, {"a": series, "b": series[:20]})
    assert (first.id, second.id) == ("a", "b")
    assert stream.forecast is not None
    assert first.median == pytest.approx(stream.forecast.median, rel=1e-4)
    assert second.origin == at(series[19])


async def test_the_async_client_does_the_same_concurrently(
    service: ServiceProcess, model: ModelVersion
) -> None:
    async with AsyncForecastClient(service.url, api_key=WRITE) as client:
        ids = [f"async-{i}" for i in range(12)]
        await asyncio.gather(*(client.create_stream(s, model.name) for s in ids))
        answers = await asyncio.gather(*(client.observe(s, readings(model, 0, 3)) for s in ids))
        assert {(a.stream_id, a.seq, a.applied) for a in answers} == {(s, 3, 3) for s in ids}
        bulk = await client.observe_bulk({s: readings(model, 3, 1) for s in ids})
        assert {a.unwrap().seq for a in bulk} == {4}
        assert (await client.get_stream(ids[0], readings=2)).readings is not None
        assert [m.name for m in await client.model(model.name)] == [model.name]
        await client.delete_stream(ids[0])
        with pytest.raises(NotFound):
            await client.get_stream(ids[0])


def test_the_websocket_one_by_one_and_pipelined(
    client: ForecastClient, service: ServiceProcess, model: ModelVersion
) -> None:
    for sid in ("w1", "w2", "w3"):
        client.create_stream(sid, model.name)
    with client.socket() as socket:
        for i in range(3):
            assert socket.observe("w1", readings(model, i, 1)).seq == i + 1
        with pytest.raises(NotFound):
            socket.observe("nobody", readings(model, 0, 1))
        sent = [socket.send(sid, readings(model, 0, 2)) for sid in ("w2", "w3")]
        answers = {a.id: a for a in (socket.receive(timeout=10), socket.receive(timeout=10))}
        assert set(answers) == set(sent)
        assert {a.unwrap().stream_id for a in answers.values()} == {"w2", "w3"}
    # A wrong key: refused at the upgrade (HTTP 403) or, by a service that accepts and then
    # closes with 4401, on the first message; raised typed either way, never retried.
    with (
        ForecastClient(service.url, api_key="wrong-key-0123456789") as stranger,
        pytest.raises((Unauthorized, Forbidden)),
        stranger.socket() as refused,
    ):
        refused.observe("w1", readings(model, 9, 1))


async def test_many_tasks_share_one_async_websocket(
    service: ServiceProcess, model: ModelVersion
) -> None:
    async with AsyncForecastClient(service.url, api_key=WRITE) as client:
        ids = [f"aws-{i}" for i in range(8)]
        for sid in ids:
            await client.create_stream(sid, model.name)
        async with client.socket() as socket:
            for step in range(3):
                answers = await asyncio.gather(
                    *(socket.observe(sid, readings(model, step, 1)) for sid in ids)
                )
                assert {(a.stream_id, a.seq) for a in answers} == {(s, step + 1) for s in ids}
            message_id = await socket.send(ids[0], readings(model, 3, 1))
            pipelined = await asyncio.wait_for(socket.receive(), 10)
            assert pipelined.id == message_id
            assert pipelined.unwrap().seq == 4


def collect(events: Iterator[StreamEvent], count: int, out: list[StreamEvent]) -> None:
    for event in events:
        out.append(event)
        if len(out) == count:
            return


def collect_until(events: Iterator[StreamEvent], seq: int, out: list[StreamEvent]) -> None:
    for event in events:
        out.append(event)
        if event.stream.seq == seq:
            return


def wait_for(predicate: Any, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_subscription_hears_every_update(client: ForecastClient, model: ModelVersion) -> None:
    client.create_stream("heard", model.name, history=readings(model, 0, 5))
    events: list[StreamEvent] = []
    listener = threading.Thread(target=collect, args=(client.subscribe("heard"), 3, events))
    listener.start()
    wait_for(lambda: len(events) >= 1)
    sent = [client.observe("heard", readings(model, i, 1)) for i in (5, 6)]
    listener.join(20)
    assert [e.kind for e in events] == ["snapshot", "forecast", "forecast"]
    assert events[0].stream.seq == 5
    assert [e.result for e in events[1:]] == sent


async def test_an_async_subscription_hears_every_update(
    service: ServiceProcess, model: ModelVersion
) -> None:
    async with AsyncForecastClient(service.url, api_key=WRITE) as client:
        await client.create_stream("aheard", model.name)
        events = client.subscribe("aheard")
        snapshot = await anext(events)
        assert (snapshot.kind, snapshot.stream.seq) == ("snapshot", 0)
        sent = await client.observe("aheard", readings(model, 0, 2))
        update = await asyncio.wait_for(anext(events), 20)
        assert update.result == sent
        await events.aclose()
        with pytest.raises(NotFound):
            await anext(client.subscribe("nobody"))


def test_no_service_is_unreachable_after_the_retries() -> None:
    from tests.support.redis_server import free_port

    with ForecastClient(
        f"http://127.0.0.1:{free_port()}", retry=Retry(attempts=3, backoff=0.01)
    ) as nowhere:
        started = time.monotonic()
        with pytest.raises(ServiceUnreachable, match="ConnectError"):
            nowhere.get_stream("s")
        assert time.monotonic() - started < 5


# --- retries where they matter: a real Redis -------------------------------------------------


@pytest.fixture
def redis_service(redis_server: RedisServer) -> Iterator[ServiceProcess]:
    redis_server.flushall()
    env = {
        "FORECAST_API_KEYS": KEYS,
        "FORECAST_STORE_URL": redis_server.url,
        "FORECAST_STORE_TIMEOUT_SECONDS": "0.5",
    }
    with ServiceProcess(env) as running:
        yield running


def test_a_frozen_store_is_waited_out_and_the_reading_lands_once(
    redis_service: ServiceProcess, redis_server: RedisServer
) -> None:
    with ForecastClient(redis_service.url, api_key=WRITE, retry=PATIENT) as client:
        model = client.models()[0]
        client.create_stream("frozen", model.name)
        redis_server.pause()
        try:
            refused = httpx.post(
                f"{redis_service.url}/v1/streams/frozen/observations",
                json={"observations": [r.to_json() for r in readings(model, 0, 1)]},
                headers={"Authorization": f"Bearer {WRITE}"},
                timeout=10,
            )
            assert refused.status_code == 503, "the outage is real"
            assert "retry-after" in refused.headers
            threading.Timer(1.5, redis_server.resume).start()
            started = time.monotonic()
            answer = client.observe("frozen", readings(model, 0, 1))
            assert time.monotonic() - started > 1.0, "the client waited the outage out"
        finally:
            redis_server.resume()
        # The refused request above may have landed before the store froze; never twice.
        assert answer.seq == 1
        assert client.get_stream("frozen").seq == 1


async def test_a_restarted_service_is_waited_out_over_rest_websocket_and_events(
    redis_service: ServiceProcess,
) -> None:
    """Both clients, both sockets and a subscription, across a restart of the service."""
    with ForecastClient(redis_service.url, api_key=WRITE, retry=PATIENT) as client:
        model = client.models()[0]
        client.create_stream("kept", model.name)
        events: list[StreamEvent] = []
        listener = threading.Thread(
            target=collect_until, args=(client.subscribe("kept"), 5, events), daemon=True
        )
        listener.start()
        wait_for(lambda: len(events) >= 1)
        async with (
            AsyncForecastClient(redis_service.url, api_key=WRITE, retry=PATIENT) as aclient,
            aclient.socket() as asocket,
        ):
            with client.socket() as socket:
                assert socket.observe("kept", readings(model, 0, 1)).seq == 1
                assert (await asocket.observe("kept", readings(model, 1, 1))).seq == 2

                redis_service.stop()
                threading.Timer(0.5, redis_service.start).start()
                # Refused, then served by the new process; the sockets reconnect.
                assert (await aclient.observe("kept", readings(model, 2, 1))).seq == 3
                assert socket.observe("kept", readings(model, 3, 1)).seq == 4
                assert (await asocket.observe("kept", readings(model, 4, 1))).seq == 5
        listener.join(30)
    assert not listener.is_alive(), f"the subscription stopped at {events}"
    kinds = [e.kind for e in events]
    # Before the restart: the snapshot and seq 1, 2; after it, a new snapshot, and on to 5.
    assert kinds[:3] == ["snapshot", "forecast", "forecast"]
    assert [e.stream.seq for e in events[:3]] == [0, 1, 2]
    assert "snapshot" in kinds[3:], "followed again after the restart"
    assert events[-1].stream.seq == 5
