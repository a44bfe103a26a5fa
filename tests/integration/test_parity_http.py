"""The contract's invariant through the whole service, for every shipped model and store.

Observing a series one reading per HTTP request must give the same forecasts (within 1e-4
relative) as one stateless forecast of the series so far. Readings carry real timestamps a
model's period apart, so models with the ``time`` input are checked with their times.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.manifest import MANIFEST_FILE, Manifest
from service.settings import DEFAULT_MODEL_REPOSITORY, Settings
from tests.support.stream_parity import check_stream_parity

N_READINGS = 24
CHECKPOINTS = (1, 2, N_READINGS // 2, N_READINGS)


def shipped_models() -> list[Manifest]:
    return [
        Manifest.read(path.parent)
        for path in sorted(DEFAULT_MODEL_REPOSITORY.glob(f"*/*/{MANIFEST_FILE}"))
    ]


def series(manifest: Manifest, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    t = np.arange(N_READINGS)
    base = np.stack(
        [
            np.sin(t / 3.0 + f) * (1 + f) + rng.normal(0, 0.1, N_READINGS)
            for f in range(manifest.n_features)
        ],
        axis=1,
    )
    start = 1_800_000_000.0
    return [
        {"timestamp": start + i * manifest.frequency, "values": [float(v) for v in base[i]]}
        for i in range(N_READINGS)
    ]


@pytest.fixture(params=["memory", "redis"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[AsyncTestClient[Any]]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    settings = Settings(model_repository=DEFAULT_MODEL_REPOSITORY, providers="cpu", store_url=url)
    async with AsyncTestClient(app=create_app(settings)) as c:
        yield c


def test_the_repository_ships_an_lstm_a_gru_and_what_wins() -> None:
    models = {m.name: m for m in shipped_models()}
    assert {"lstm", "gru"} <= {m.kind for m in models.values()}
    assert models["taylor-ets"].time_input  # the best model on taylor, served under the contract


@pytest.mark.parametrize("manifest", shipped_models(), ids=lambda m: f"{m.name}-v{m.version}")
async def test_one_reading_per_request_equals_whole_series(
    client: AsyncTestClient[Any], manifest: Manifest
) -> None:
    await check_stream_parity(
        client, manifest, series(manifest), CHECKPOINTS, stream=f"parity-{manifest.name}"
    )
