"""The sequential reference of ``gap_policy="median"``, written independently of the service.

Readings go through the model runtime one row at a time from the initial state. Before a
reading that comes more than 1.5 periods after the previous one, the round(step / period) - 1
missing readings are fed first: the k-th gets, in the target column, step k of the median
forecast made right after the previous reading, and the previous reading's values in the
other columns; once H of them have been fed, the forecast made after the H-th fills the next
H (the roll-out of a gap longer than the horizon).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.runtime import ModelRuntime


@dataclass(frozen=True)
class Reference:
    """What the stream must hold after the readings: every row fed, the state, the forecast."""

    timestamps: npt.NDArray[np.float64]
    values: npt.NDArray[np.float32]
    state: npt.NDArray[np.float32]
    forecast: npt.NDArray[np.float32]
    filled: int


def median_fill_reference(
    runtime: ModelRuntime, timestamps: Sequence[float], values: Sequence[Sequence[float]]
) -> Reference:
    """Feed ``values`` at ``timestamps`` one row at a time, filling every gap from the median."""
    manifest = runtime.manifest
    target = manifest.features.index(manifest.target)
    median = manifest.median_index
    state = runtime.initial_state[None]
    forecast: npt.NDArray[np.float32] | None = None
    fed_ts: list[float] = []
    fed_values: list[list[float]] = []

    def feed(ts: float, row: list[float]) -> None:
        nonlocal state, forecast
        out, state = runtime.run(np.array([[row]], dtype=np.float32), state, np.array([[ts]]))
        forecast = out[0]
        fed_ts.append(ts)
        fed_values.append(row)

    for i, (ts, row) in enumerate(zip(timestamps, values, strict=True)):
        if i:
            steps = (ts - timestamps[i - 1]) / manifest.frequency
            missing = int(np.rint(steps)) - 1 if steps > 1.5 else 0
            plan = forecast
            for k in range(missing):
                if k % manifest.horizon == 0:
                    plan = forecast
                assert plan is not None
                filled = [float(v) for v in values[i - 1]]
                filled[target] = float(plan[k % manifest.horizon, median])
                feed(timestamps[i - 1] + (k + 1) * manifest.frequency, filled)
        feed(ts, [float(v) for v in row])
    assert forecast is not None
    return Reference(
        timestamps=np.array(fed_ts, dtype=np.float64),
        values=np.array(fed_values, dtype=np.float32),
        state=state[0],
        forecast=forecast,
        filled=len(fed_ts) - len(timestamps),
    )
