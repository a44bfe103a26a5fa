"""Every answer that accepted a gap says how many readings were missing, whatever the policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.settings import Settings
from service.state.memory import MemoryStore

T0 = 1_800_000_000.0
HOUR = 3600.0


def obs(hours: float) -> dict[str, Any]:
    return {"timestamp": T0 + HOUR * hours, "values": [1.0, 20.0]}


@pytest.mark.parametrize(("policy", "filled"), [("accept", 0), ("forward", 4), ("median", 4)])
async def test_a_gap_is_reported_under_every_policy_that_applies_it(
    model_repository: Path, policy: str, filled: int
) -> None:
    settings = Settings(model_repository=model_repository, providers="cpu", gap_policy=policy)
    async with AsyncTestClient(app=create_app(settings, store=MemoryStore())) as c:
        await c.put("/v1/streams/g", json={"model": "demo-lstm", "history": [obs(0), obs(1)]})
        # Five hours after the last reading: four hourly readings are missing.
        r = await c.post("/v1/streams/g/observations", json={"observations": [obs(6)]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["applied"], body["missing"], body["filled"]) == (1, 4, filled)
        assert body["seq"] == 3 + filled
        # No gap: nothing missing.
        r = await c.post("/v1/streams/g/observations", json={"observations": [obs(7)]})
        assert r.json()["missing"] == 0
        # The compact bulk answer says it too, per stream.
        r = await c.post(
            "/v1/observations",
            json={"detail": "summary", "streams": [{"stream_id": "g", "observations": [obs(10)]}]},
        )
        (answer,) = r.json()["results"]
        assert answer["summary"]["missing"] == 2


async def test_a_long_gap_accepted_as_it_is_says_how_long(model_repository: Path) -> None:
    """The case that went unnoticed: a day-long gap fed as one step under ``accept``."""
    settings = Settings(model_repository=model_repository, providers="cpu")
    async with AsyncTestClient(app=create_app(settings, store=MemoryStore())) as c:
        await c.put("/v1/streams/d", json={"model": "demo-gru", "history": [obs(0)]})
        r = await c.post("/v1/streams/d/observations", json={"observations": [obs(27.8)]})
        assert r.status_code == 200
        assert (r.json()["filled"], r.json()["missing"]) == (0, 27)


async def test_reject_applies_no_gap_and_a_history_reports_its_own(model_repository: Path) -> None:
    settings = Settings(model_repository=model_repository, providers="cpu", gap_policy="reject")
    async with AsyncTestClient(app=create_app(settings, store=MemoryStore())) as c:
        r = await c.put("/v1/streams/h", json={"model": "demo-lstm", "history": [obs(0), obs(3)]})
        assert r.status_code == 201
        assert r.json()["missing"] == 2  # the history is applied as given, and says so
        r = await c.post("/v1/streams/h/observations", json={"observations": [obs(5)]})
        assert r.status_code == 422
