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
        ([1.0], [[1e39]], "observations[0].values"),
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
