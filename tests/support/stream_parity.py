"""The contract's invariant through the whole service, for any model a test serves.

Observing a series one reading per HTTP request must give the same forecasts (within 1e-4
relative) as one stateless forecast of the series so far, times included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from litestar.testing import AsyncTestClient

from service.manifest import Manifest


def quantile_bands(forecast: dict[str, Any]) -> np.ndarray:
    """A forecast's quantiles as [H, Q]."""
    return np.array([list(step["quantiles"].values()) for step in forecast["steps"]])


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    scale = max(float(np.abs(expected).max()), 1e-6)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale)


async def check_stream_parity(
    client: AsyncTestClient[Any],
    manifest: Manifest,
    readings: Sequence[dict[str, Any]],
    checkpoints: Sequence[int],
    *,
    stream: str,
) -> None:
    """Feed ``readings`` one per request and compare, at each checkpoint k, the stream's
    forecast with one stateless forecast of the first k readings."""
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
        if i in checkpoints:
            incremental[i] = quantile_bands(r.json()["forecast"])
    batch = {
        "version": manifest.version,
        "series": [{"id": str(k), "observations": list(readings[:k])} for k in checkpoints],
    }
    r = await client.post(f"/v1/models/{manifest.name}/forecast", json=batch)
    assert r.status_code == 200, r.text
    for k, whole in zip(checkpoints, r.json()["forecasts"], strict=True):
        assert whole["id"] == str(k)
        assert_close(incremental[k], quantile_bands(whole))
        assert len(whole["steps"]) == manifest.horizon
