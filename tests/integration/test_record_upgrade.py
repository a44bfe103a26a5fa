"""Records of format 1 (before the score tail) still decode, score and are written back as
format 2, on the embedded store and a real Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.settings import Settings
from service.state import open_store
from service.state.base import StateStore
from service.state.keys import stream_key
from service.state.record import FLAG_SCORE, SCORE_SIZE, StreamRecord

T0 = 1_790_000_000.0
HOUR = 3600.0


def obs(i: int, value: float = 0.0) -> dict[str, Any]:
    return {"timestamp": T0 + HOUR * i, "values": [value, 1.0]}


def as_format_1(record: bytes) -> bytes:
    """The same record as format 1 wrote it: no score tail, format byte 1, flag bit 1 clear."""
    kind_flags = record[3]
    assert kind_flags & FLAG_SCORE
    data = bytearray(record[:-SCORE_SIZE])
    data[2] = 1
    data[3] = kind_flags & ~FLAG_SCORE
    return bytes(data)


@pytest.fixture(params=["memory", "redis"])
def url(request: pytest.FixtureRequest) -> str:
    return "memory://" if request.param == "memory" else str(request.getfixturevalue("redis_url"))


@pytest.mark.parametrize("history_length", [48, 0])
async def test_a_format_1_record_decodes_scores_and_comes_back_as_format_2(
    model_repository: Path, url: str, history_length: int
) -> None:
    settings = Settings(
        model_repository=model_repository,
        providers="cpu",
        store_url=url,
        history_length=history_length,
    )
    key = stream_key("fcst", "default", "old")
    async with AsyncTestClient(app=create_app(settings)) as c:
        # The embedded store is the app's own; Redis is reached from this test's loop.
        own = url.startswith("redis")
        store: StateStore = (
            open_store(url, timeout_seconds=1.0) if own else c.app.state.forecaster.store
        )
        history = [obs(i, 0.1 * i) for i in range(6)]
        made = await c.put("/v1/streams/old", json={"model": "demo-lstm", "history": history})
        assert made.status_code == 201
        current = await store.get(key)
        assert current is not None
        old = as_format_1(current)
        decoded = StreamRecord.decode(old)
        assert np.isnan(decoded.last_target)
        assert decoded.anomaly_bits == 0
        assert await store.compare_and_set(key, current[4:20], old, 3600.0)
        c.app.state.forecaster.engine.cache.drop(key)  # the service must read the old bytes

        assert (await c.get("/v1/streams/old")).json()["seq"] == 6
        r = await c.post("/v1/streams/old/observations", json={"observations": [obs(6, 0.2)]})
        assert r.status_code == 200, r.text
        (score,) = r.json()["scores"]
        # With a history, the naive forecast's value comes from it: scored at once. Without,
        # the upgraded record does not know the last value yet: the answer says so.
        assert score["scored"] is (history_length > 0)
        r = await c.post("/v1/streams/old/observations", json={"observations": [obs(7, 0.3)]})
        assert r.json()["scores"][0]["scored"] is True
        written = await store.get(key)
        if own:
            await store.close()
    assert written is not None
    assert written[2] == 2
    assert written[3] & FLAG_SCORE
    record = StreamRecord.decode(written)
    assert record.seq == 8
    assert record.last_target == pytest.approx(0.3)
