"""The column lane (one reading for a stream seen once in a batch, applied as arrays) writes
the same records and gives the same answers as the general path, one stream at a time.

Each case has two identical streams. One gets its reading alone (the column lane); the other
gets the same reading in a batch where that stream also has a duplicate, which sends it down
the general path. Their stored records and answers must then be equal, except the random
write nonce and the incarnation (which differs since each stream was created on its own).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from service.forecaster import Forecaster, Observations, ObserveResult
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.state.keys import stream_key
from service.state.memory import MemoryStore
from service.state.record import StreamRecord

T0 = 1_790_000_000.0
TENANT = "default"


@pytest.fixture
def registry(model_repository: Path) -> Iterator[ModelRegistry]:
    models = ModelRegistry.load(model_repository, providers="cpu")
    yield models
    models.close()


def reading(hour: float, n_features: int = 2) -> Observations:
    values = [float(np.sin(hour) + k) for k in range(n_features)]
    return Observations.build([T0 + 3600.0 * hour], [values])


def history(hours: int) -> Observations | None:
    if not hours:
        return None
    return Observations.build(
        [T0 + 3600.0 * h for h in range(hours)],
        [[float(np.cos(h)), float(h)] for h in range(hours)],
    )


async def record(store: MemoryStore, stream: str) -> StreamRecord:
    raw = await store.get(stream_key("fcst", TENANT, stream))
    assert raw is not None
    return StreamRecord.decode(raw)


def assert_same_record(a: StreamRecord, b: StreamRecord) -> None:
    assert (a.model, a.version, a.fingerprint) == (b.model, b.version, b.fingerprint)
    assert (a.seq, a.last_ts) == (b.seq, b.last_ts)
    np.testing.assert_array_equal(a.state, b.state)
    for x, y in ((a.forecast, b.forecast), (a.history_ts, b.history_ts)):
        assert (x is None) == (y is None)
        if x is not None and y is not None:
            np.testing.assert_array_equal(x, y)
    assert (a.history_values is None) == (b.history_values is None)
    if a.history_values is not None and b.history_values is not None:
        np.testing.assert_array_equal(a.history_values, b.history_values)


def assert_same_answer(a: ObserveResult, b: ObserveResult) -> None:
    assert (a.applied, a.skipped, a.filled) == (b.applied, b.skipped, b.filled)
    va, vb = a.stream, b.stream
    assert (va.model, va.version, va.seq, va.last_timestamp) == (
        vb.model,
        vb.version,
        vb.seq,
        vb.last_timestamp,
    )
    assert (va.forecast is None) == (vb.forecast is None)
    if va.forecast is not None and vb.forecast is not None:
        assert va.forecast.origin == vb.forecast.origin
        np.testing.assert_array_equal(va.forecast.values, vb.forecast.values)


@pytest.mark.parametrize("model", ["demo-lstm", "demo-gru"])
@pytest.mark.parametrize(("created_with", "kept"), [(48, 48), (48, 2), (0, 0), (3, 0), (2, 3)])
@pytest.mark.parametrize("warm", [0, 1, 5])
@pytest.mark.parametrize("hour", [9.0, 2.0])  # after the history, or a duplicate of it
async def test_one_reading_as_columns_equals_the_general_path(
    registry: ModelRegistry, model: str, created_with: int, kept: int, warm: int, hour: float
) -> None:
    """History kept longer or shorter than now, none, a new stream, a duplicate reading."""
    store = MemoryStore()
    creator = Forecaster(registry, store, Metrics(), history_length=created_with)
    f = Forecaster(registry, store, Metrics(), history_length=kept)
    try:
        for stream in ("columns", "rows"):
            await creator.create_stream(TENANT, stream, model, history=history(warm))
        (alone,) = await f.observe_many(TENANT, [("columns", reading(hour))])
        duplicate = reading(min(hour, warm - 1.0)) if warm else reading(hour)
        pair = [("rows", duplicate), ("rows", reading(hour))] if warm else [("rows", reading(hour))]
        *_, general = await f.observe_many(TENANT, pair)
        assert isinstance(alone, ObserveResult)
        assert isinstance(general, ObserveResult)
        assert_same_answer(alone, general)
        assert_same_record(await record(store, "columns"), await record(store, "rows"))
    finally:
        await creator.aclose()
        await f.aclose()


async def test_many_streams_of_two_models_in_one_batch(registry: ModelRegistry) -> None:
    """Two layouts in one batch: each stream gets what the general path gives it alone."""
    store = MemoryStore()
    f = Forecaster(registry, store, Metrics())
    try:
        streams = [(f"s{i}", "demo-lstm" if i % 2 else "demo-gru", 1 + i % 3) for i in range(12)]
        for stream, model, warm in streams:
            for name in (stream, f"ref-{stream}"):
                await f.create_stream(TENANT, name, model, history=history(warm))
        items = [(stream, reading(7.0 + i)) for i, (stream, _, _) in enumerate(streams)]
        together = await f.observe_many(TENANT, items)
        for i, (stream, _, _) in enumerate(streams):
            ref = f"ref-{stream}"
            *_, alone = await f.observe_many(TENANT, [(ref, reading(0.0)), (ref, reading(7.0 + i))])
            assert isinstance(together[i], ObserveResult)
            assert isinstance(alone, ObserveResult)
            assert_same_answer(together[i], alone)
            assert_same_record(await record(store, stream), await record(store, ref))
    finally:
        await f.aclose()
