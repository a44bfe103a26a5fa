"""The contract's invariant through the whole service, for every shipped model and store.

Observing a series one reading per HTTP request must give the same forecasts (within 1e-4
relative) as one stateless forecast of the series so far.
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


def medians_and_bands(forecast: dict[str, Any]) -> np.ndarray:
    return np.array([list(step["quantiles"].values()) for step in forecast["steps"]])


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    scale = max(float(np.abs(expected).max()), 1e-6)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale)


@pytest.fixture(params=["memory", "redis"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[AsyncTestClient[Any]]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    settings = Settings(model_repository=DEFAULT_MODEL_REPOSITORY, providers="cpu", store_url=url)
    async with AsyncTestClient(app=create_app(settings)) as c:
        yield c


def test_the_repository_ships_an_lstm_and_a_gru() -> None:
    kinds = {m.kind for m in shipped_models()}
    assert {"lstm", "gru"} <= kinds


@pytest.mark.parametrize("manifest", shipped_models(), ids=lambda m: f"{m.name}-v{m.version}")
async def test_one_reading_per_request_equals_whole_series(
    client: AsyncTestClient[Any], manifest: Manifest
) -> None:
    readings = series(manifest)
    stream = f"parity-{manifest.name}"
    r = await client.put(
        f"/v1/streams/{stream}", json={"model": manifest.name, "version": manifest.version}
    )
    assert r.status_code == 201, r.text
    incremental: dict[int, np.ndarray] = {}
    for i, reading in enumerate(readings, start=1):
        r = await client.post(
            f"/v1/streams/{stream}/observations", json={"observations": [reading]}
        )
        assert r.status_code == 200, r.text
        assert r.json()["seq"] == i
        if i in CHECKPOINTS:
            incremental[i] = medians_and_bands(r.json()["forecast"])
    batch = {
        "version": manifest.version,
        "series": [{"id": str(k), "observations": readings[:k]} for k in CHECKPOINTS],
    }
    r = await client.post(f"/v1/models/{manifest.name}/forecast", json=batch)
    assert r.status_code == 200, r.text
    for k, whole in zip(CHECKPOINTS, r.json()["forecasts"], strict=True):
        assert whole["id"] == str(k)
        assert_close(incremental[k], medians_and_bands(whole))
    assert len(whole["steps"]) == manifest.horizon
