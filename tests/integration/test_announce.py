"""The one announcement per committed batch reaches this process's listeners of a tenant."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.forecaster import Forecaster
from service.settings import Settings

T0 = 1_800_000_000.0


def reading(i: int) -> dict[str, Any]:
    return {"timestamp": T0 + 3600 * i, "values": [float(i), 20.0]}


async def test_listeners_hear_applied_updates_of_their_tenant_only(model_repository: Path) -> None:
    app = create_app(Settings(model_repository=model_repository, providers="cpu"))
    async with AsyncTestClient(app=app) as client:
        forecaster: Forecaster = app.state.forecaster
        await client.put("/v1/streams/pump", json={"model": "demo-lstm"})
        async with (
            forecaster.announcer.listen("default") as mine,
            forecaster.announcer.listen("other") as theirs,
        ):
            heard, elsewhere = aiter(mine), aiter(theirs)
            body = {"observations": [reading(0), reading(1)]}
            answer = await client.post("/v1/streams/pump/observations", json=body)
            assert answer.status_code == 200, answer.text
            stream_id, payload = await asyncio.wait_for(anext(heard), 10)
            assert stream_id == "pump"
            assert json.loads(payload) == answer.json()
            # A replay is a duplicate: nothing applied, nothing announced.
            again = await client.post("/v1/streams/pump/observations", json=body)
            assert again.json()["applied"] == 0
            third = await client.post(
                "/v1/streams/pump/observations", json={"observations": [reading(2)]}
            )
            assert (await asyncio.wait_for(anext(heard), 10))[1] == third.content
            with pytest.raises(TimeoutError):  # another tenant's listener hears nothing
                await asyncio.wait_for(anext(elsewhere), 0.2)
