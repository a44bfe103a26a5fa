"""The core's input checks and per-key locking, without HTTP or a store."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.errors import InvalidInput
from service.forecaster import Observations


def test_build_converts_and_keeps_order() -> None:
    obs = Observations.build([1.0, 2.0, 5.0], [[1, 2], [3, 4], [5, 6]])
    assert obs.values.dtype == np.float32
    assert obs.values.shape == (3, 2)
    assert obs.timestamps.dtype == np.float64
    assert len(obs) == 3


@pytest.mark.parametrize(
    ("timestamps", "values", "field"),
    [
        ([1.0, 2.0], [[1.0], [math.nan]], "observations[1].values[0]"),
        ([1.0], [[math.inf]], "observations[0].values[0]"),
        ([1.0], [[1e39]], "observations[0].values[0]"),
        ([1.0, 1.0], [[1.0], [2.0]], "observations[1].timestamp"),
        ([2.0, 1.0], [[1.0], [2.0]], "observations[1].timestamp"),
        ([math.nan], [[1.0]], "observations[0].timestamp"),
        ([1.0, 2.0], [[1.0], [2.0, 3.0]], "observations"),
        ([], [], "observations"),
    ],
)
def test_build_rejects(timestamps: list[float], values: list[list[float]], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Observations.build(timestamps, values)
    assert info.value.field == field


def test_feature_count_is_checked() -> None:
    obs = Observations.build([1.0], [[1.0, 2.0]])
    obs.check_features(2)
    with pytest.raises(InvalidInput):
        obs.check_features(3)


def test_small_and_large_inputs_are_checked_alike() -> None:
    """Small inputs take a plain-Python path, large ones numpy's: same answers, same errors."""
    for n in (3, 300):
        ts = [float(i) for i in range(n)]
        vals = [[float(i), -float(i)] for i in range(n)]
        obs = Observations.build(ts, vals)
        np.testing.assert_array_equal(obs.values, np.array(vals, dtype=np.float32))
        bad = [row[:] for row in vals]
        bad[n - 1][1] = math.inf
        with pytest.raises(InvalidInput) as info:
            Observations.build(ts, bad)
        assert info.value.field == f"observations[{n - 1}].values[1]"
        assert "inf is not a finite number" in info.value.detail
        with pytest.raises(InvalidInput) as info:
            Observations.build([*ts[:-1], ts[0]], vals)
        assert info.value.field == f"observations[{n - 1}].timestamp"
