"""Answers written straight to JSON text give the bytes the answer objects would give."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from service.api.schemas import _step_structs, _steps
from service.forecaster import Forecast


@pytest.mark.parametrize("seed", range(40))
def test_steps_as_text_equal_the_structs(seed: int) -> None:
    """Any magnitude, signed zero, NaN and infinity (written as null), 3 or 4 quantiles,
    whole and fractional step times, and no origin at all."""
    rng = np.random.default_rng(seed)
    quantiles = (0.1, 0.5, 0.9) if seed % 2 else (0.05, 0.5, 0.95, 0.99)
    horizon = int(rng.integers(1, 30))
    scale = 10.0 ** int(rng.integers(-40, 39))
    values = (rng.standard_normal((horizon, len(quantiles))) * scale).astype(np.float32)
    values[0, 0] = -0.0
    if seed % 5 == 0:
        values[-1, 1], values[0, -1] = np.nan, np.inf
    origin = None if seed % 7 == 0 else 1_800_000_000.0 + int(rng.integers(0, 10**6))
    frequency = 1800.0 if seed % 3 else 0.75
    forecast = Forecast("m", 1, "y", quantiles, frequency, origin, values, 1)
    text = msgspec.json.encode(_steps(forecast))
    assert text == msgspec.json.encode(_step_structs(forecast))
    steps = msgspec.json.decode(text)
    assert [s["step"] for s in steps] == list(range(1, horizon + 1))
