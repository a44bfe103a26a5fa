"""Property: any interleaving of duplicate, out-of-order and concurrent observations leaves a
stream in the state of a sequential run (hypothesis; the embedded store, a real Redis, and
two replicas on one Redis racing through its compare-and-set).

What "sequential reference" means here
--------------------------------------
A stream applies a reading only if it is strictly newer than every reading applied before it;
anything at or before the stream's last timestamp is a duplicate and is skipped (that is
what makes retries safe). So a reading that arrives *after* a newer one is skipped even if
it was never applied: it is late, and late is the same as duplicate.

Requests of one wave are sent concurrently; waves follow each other. Within a wave the order
in which the service serialised the requests is not known in advance, so the reference is:
there is an order of the wave's requests (its acknowledgement order) such that replaying
every request in that order, each applying exactly its readings strictly newer than the
stream's last timestamp, gives every request the applied/skipped split the service reported.
The reference readings are those that replay applies, in that order; the stream's final
``seq``, last timestamp, stored state row and forecast must equal one model call over them
from the initial state (the contract's parity invariant makes that equal to step-by-step).

Under ``gap_policy="median"`` the hours between applied readings are missing readings, filled
from the model's own median forecast; the reference is then ``tests.support.gap_reference``
over the applied readings (one row at a time, the filled rows in between), and the filled
rows the answers report must add up to the ones it fills.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.app import create_app
from service.forecaster import Forecaster, Observations, ObserveResult
from service.settings import Settings
from service.state.keys import stream_key
from service.state.record import StreamRecord
from tests.support.gap_reference import median_fill_reference

T0 = 1_790_000_000.0
TENANT = "default"
MODEL = "demo-lstm"


def scenarios(last_hour: int) -> st.SearchStrategy[list[list[list[int]]]]:
    """Waves of requests whose readings fall on hours 0..last_hour after T0."""
    #: One request: strictly increasing small timestamps (hours after T0).
    request = st.lists(st.integers(0, last_hour), min_size=1, max_size=4, unique=True).map(sorted)
    #: A wave: 2-3 concurrent requests, one maybe sent twice (a retry racing the original).
    wave = st.lists(request, min_size=2, max_size=3).flatmap(
        lambda wave: st.lists(st.sampled_from(wave), min_size=0, max_size=1).map(lambda d: wave + d)
    )
    return st.lists(wave, min_size=1, max_size=5)


scenario_strategy = scenarios(11)


def values_at(hour: int, variant: int = 0) -> list[float]:
    return [float(np.sin(hour) + variant), float(20.0 - 0.5 * hour)]


def observations(hours: Sequence[int]) -> Observations:
    return Observations.build([T0 + 3600.0 * h for h in hours], [values_at(h) for h in hours])


def replay(
    last: float, order: Sequence[tuple[list[int], ObserveResult]]
) -> tuple[float, list[int]] | None:
    """Replay requests in ``order``; None unless every reported split comes out the same."""
    applied: list[int] = []
    for hours, result in order:
        times = [T0 + 3600.0 * h for h in hours]
        fresh = [h for h, t in zip(hours, times, strict=True) if t > last]
        skipped = tuple(t for t in times if t <= last)
        if result.applied != len(fresh) or tuple(result.skipped) != skipped:
            return None
        applied += fresh
        if fresh:
            last = T0 + 3600.0 * fresh[-1]
    return last, applied


class Harness:
    """Forecasters of one or two apps (replicas on one store), driven from a private loop
    (hypothesis tests are sync). A wave's requests alternate between the replicas, so with
    two of them concurrent writes race through the store's compare-and-set."""

    def __init__(
        self, runner: asyncio.Runner, forecasters: list[Forecaster], gap_policy: str
    ) -> None:
        self.runner = runner
        self.forecasters = forecasters
        self.forecaster = forecasters[0]
        self.gap_policy = gap_policy
        self.streams = itertools.count()

    def run_scenario(self, waves: list[list[list[int]]]) -> None:
        self.runner.run(self._scenario(waves, f"prop-{next(self.streams)}"))

    async def _scenario(self, waves: list[list[list[int]]], stream: str) -> None:
        f = self.forecaster
        await f.create_stream(TENANT, stream, MODEL)
        last = float("-inf")
        reference: list[int] = []
        filled = 0
        for wave in waves:
            results = await asyncio.gather(
                *(f.observe(TENANT, stream, observations(h)) for h in wave)
            )
            filled += sum(r.filled for r in results)
            calls = list(zip(wave, results, strict=True))
            for order in itertools.permutations(calls):
                replayed = replay(last, order)
                if replayed is not None:
                    last, applied = replayed
                    reference += applied
                    break
            else:
                pytest.fail(f"no sequential order explains {[(h, r.applied) for h, r in calls]}")
        await self._check(stream, reference, last, filled)

    async def _check(self, stream: str, reference: list[int], last: float, filled: int) -> None:
        f = self.forecaster
        view = await f.get_stream(TENANT, stream)
        assert reference == sorted(set(reference))  # strictly increasing: nothing twice
        raw = await f.store.get(stream_key("fcst", TENANT, stream))
        assert raw is not None
        record = StreamRecord.decode(raw)
        runtime = f.registry.get(MODEL)
        if not reference:
            assert (view.seq, filled) == (0, 0)
            assert view.last_timestamp is None
            np.testing.assert_array_equal(record.state, runtime.initial_state)
            return
        assert view.last_timestamp == last
        if self.gap_policy == "median":
            times = [T0 + 3600.0 * h for h in reference]
            expected = median_fill_reference(runtime, times, [values_at(h) for h in reference])
            assert (view.seq, filled) == (len(expected.timestamps), expected.filled)
            state, forecast = expected.state, expected.forecast
        else:
            assert (view.seq, filled) == (len(reference), 0)
            x = np.array([[values_at(h) for h in reference]], dtype=np.float32)
            forecasts, states = runtime.run(x, runtime.initial_state[None])
            state, forecast = states[0], forecasts[0]
        np.testing.assert_allclose(record.state, state, rtol=1e-4, atol=1e-5)
        assert view.forecast is not None
        np.testing.assert_allclose(view.forecast.values, forecast, rtol=1e-4, atol=1e-5)


BACKENDS = ["memory", "redis", "redis-two-replicas"]


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest, model_repository: Path) -> Iterator[Harness]:
    yield from start_harness(request, model_repository, "accept")


@pytest.fixture(params=BACKENDS)
def median_harness(request: pytest.FixtureRequest, model_repository: Path) -> Iterator[Harness]:
    yield from start_harness(request, model_repository, "median")


def start_harness(
    request: pytest.FixtureRequest, model_repository: Path, gap_policy: str
) -> Iterator[Harness]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    replicas = 2 if request.param == "redis-two-replicas" else 1
    settings = Settings(
        model_repository=model_repository, providers="cpu", store_url=url, gap_policy=gap_policy
    )
    apps = [create_app(settings) for _ in range(replicas)]
    stop = asyncio.Event()

    async def host(app: Any, ready: asyncio.Future[None]) -> None:
        # The lifespan is entered and left by this one task (anyio insists), kept alive
        # between the examples' ``runner.run`` calls.
        async with app.lifespan():
            ready.set_result(None)
            await stop.wait()

    async def start(app: Any) -> asyncio.Task[None]:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(host(app, ready))
        await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        return task

    async def finish(tasks: list[asyncio.Task[None]]) -> None:
        stop.set()
        await asyncio.gather(*tasks)

    with asyncio.Runner() as runner:
        tasks = [runner.run(start(app)) for app in apps]
        try:
            yield Harness(runner, [app.state.forecaster for app in apps], gap_policy)
        finally:
            runner.run(finish(tasks))


# Each example uses a stream of its own, so sharing the app between examples is sound.
@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(waves=scenario_strategy)
def test_any_interleaving_gives_the_sequential_reference(
    harness: Harness, waves: list[list[list[int]]]
) -> None:
    harness.run_scenario(waves)


# Most hours a request skips are missing readings here, so most requests take the median
# path (model calls between the rows), racing the others through the compare-and-set. Over
# 24 hours many gaps are longer than the demo models' horizon (4): rolled out.
@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(waves=scenarios(23))
@example(waves=[[[0, 9], [0, 9], [2, 3, 20]], [[21, 23], [22]]])
def test_median_gap_filling_under_any_interleaving_gives_the_sequential_reference(
    median_harness: Harness, waves: list[list[list[int]]]
) -> None:
    median_harness.run_scenario(waves)


def test_the_reference_rule_on_a_known_case(harness: Harness) -> None:
    """A worked example of the rule in the module docstring, with no concurrency."""
    outcome: dict[str, Any] = {}

    async def run() -> None:
        f = harness.forecaster
        await f.create_stream(TENANT, "known", MODEL)
        r1 = await f.observe(TENANT, "known", observations([1, 3]))
        r2 = await f.observe(TENANT, "known", observations([2]))  # late: skipped
        r3 = await f.observe(TENANT, "known", observations([3, 4]))  # 3 again, then 4
        outcome.update(r1=r1, r2=r2, r3=r3, view=await f.get_stream(TENANT, "known"))

    harness.runner.run(run())
    assert (outcome["r1"].applied, outcome["r1"].skipped) == (2, ())
    assert (outcome["r2"].applied, outcome["r2"].skipped) == (0, (T0 + 7200.0,))
    assert (outcome["r3"].applied, outcome["r3"].skipped) == (1, (T0 + 3 * 3600.0,))
    assert outcome["view"].seq == 3
    assert outcome["view"].last_timestamp == T0 + 4 * 3600.0
