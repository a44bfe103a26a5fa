"""One model call, timed and counted; small ones on the event loop, large ones on a thread."""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from service.metrics import Metrics
from service.runtime import ModelRuntime

FloatArray = npt.NDArray[np.float32]
TimeArray = npt.NDArray[np.float64]

#: Model calls of at most this many rows x steps run on the event loop (tens of
#: microseconds); larger ones go to a thread, where onnxruntime releases the GIL.
INLINE_STEPS = 8


class ModelCalls:
    """Runs ``runtime``'s graph and records latency, rows and steps per model version."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def run(
        self, runtime: ModelRuntime, x: FloatArray, state: FloatArray, times: TimeArray
    ) -> tuple[FloatArray, FloatArray]:
        """``times`` [B, T] are the rows' timestamps (for graphs that read them)."""
        m = self._metrics
        labels = (runtime.name, str(runtime.version))
        start = time.perf_counter()
        if x.shape[0] * x.shape[1] <= INLINE_STEPS:
            forecast, state_out = runtime.run(x, state, times)
        else:
            forecast, state_out = await runtime.run_async(x, state, times)
        m.inference_latency.labels(*labels).observe(time.perf_counter() - start)
        m.inference_rows.labels(*labels).observe(x.shape[0])
        m.inference_steps.labels(*labels).observe(x.shape[1])
        return forecast, state_out

    async def feed(
        self, runtime: ModelRuntime, values: FloatArray, times: TimeArray, state: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """One series' rows [T, F] from ``state`` [S]: its forecast [H, Q] and new state [S]."""
        forecast, state_out = await self.run(runtime, values[None], state[None], times[None])
        return forecast[0], state_out[0]
