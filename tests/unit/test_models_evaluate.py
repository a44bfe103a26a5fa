"""Metrics on hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluate import (
    coverage,
    mae,
    mae_by_step,
    mase,
    origins,
    pinball,
    rmse,
    scores,
    seasonal_scale,
    targets,
)


def test_point_metrics_by_hand() -> None:
    point = np.array([[1.0, 2.0], [3.0, 4.0]])
    actual = np.array([[2.0, 2.0], [1.0, 4.0]])
    # errors 1, 0, 2, 0
    assert mae(point, actual) == pytest.approx(0.75)
    assert rmse(point, actual) == pytest.approx(np.sqrt(5 / 4))
    assert mase(point, actual, scale=0.5) == pytest.approx(1.5)
    assert mae_by_step(point, actual).tolist() == [1.5, 0.0]


def test_pinball_by_hand() -> None:
    actual = np.array([10.0])
    forecasts = np.array([[8.0, 10.0, 13.0]])  # q = 0.1, 0.5, 0.9
    # 0.1 * (10 - 8) = 0.2; 0; (0.9 - 1) * (10 - 13) = 0.3; mean = 0.5 / 3
    assert pinball(forecasts, actual, (0.1, 0.5, 0.9)) == pytest.approx(0.5 / 3)


def test_coverage_by_hand() -> None:
    lower = np.array([0.0, 0.0, 0.0, 0.0])
    upper = np.array([1.0, 1.0, 1.0, 1.0])
    actual = np.array([0.5, 1.0, 1.5, -0.1])
    assert coverage(lower, upper, actual) == pytest.approx(0.5)


def test_seasonal_scale_by_hand() -> None:
    y = np.array([1.0, 2.0, 4.0, 3.0, 2.0])
    # season 2: |4-1|, |3-2|, |2-4| -> mean 2
    assert seasonal_scale(y, 2) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="constant"):
        seasonal_scale(np.array([1.0, 2.0, 1.0, 2.0]), 2)


def test_scores_names_every_metric() -> None:
    forecasts = np.array([[[0.0, 1.0, 2.0]]])
    actual = np.array([[1.5]])
    got = scores(forecasts, actual, (0.1, 0.5, 0.9), scale=2.0)
    assert got["mae"] == pytest.approx(0.5)
    assert got["mase"] == pytest.approx(0.25)
    assert got["coverage"] == 1.0
    assert got["coverage_nominal"] == pytest.approx(0.8)
    assert "coverage_uncalibrated" not in got
    narrow = np.array([[[1.0, 1.0, 1.2]]])
    got = scores(forecasts, actual, (0.1, 0.5, 0.9), scale=2.0, uncalibrated=narrow)
    assert got["coverage_uncalibrated"] == 0.0


def test_origins_keep_targets_inside_the_block() -> None:
    at = origins(10, 20, 3)
    assert at[0] == 9
    assert at[-1] == 16
    y = np.arange(30, dtype=np.float64)
    t = targets(y, at, 3)
    assert t[0].tolist() == [10, 11, 12]
    assert t[-1].tolist() == [17, 18, 19]
