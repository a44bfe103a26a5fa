"""The MLServer runtime of the benchmark's stateless peer, loaded by the MLServer process.

Kept apart from ``mlserver_peer`` so the test process never imports MLServer: its gRPC
messages (``inference.*`` in protobuf's default pool) cannot live beside tritonclient.grpc's,
which the v2 tests import.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class WindowRuntime(MLModel):  # type: ignore[misc]
    """Forecast after each of B windows, from the model's initial state (no state kept)."""

    async def load(self) -> bool:
        import onnxruntime as ort

        directory = Path(self.settings.parameters.uri)  # type: ignore[union-attr]
        manifest = json.loads((directory / "model.json").read_text())
        self._session = ort.InferenceSession(
            str(directory / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        size = int(manifest["state_size"])
        initial = manifest.get("initial_state")
        self._initial = np.asarray(initial if initial else np.zeros(size), dtype=np.float32)
        self._time = bool(manifest.get("time_input"))
        self._period = float(manifest["frequency"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        inputs = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        x = np.ascontiguousarray(inputs["x"], dtype=np.float32)
        batch, window = x.shape[0], x.shape[1]
        feed: dict[str, Any] = {
            "x": x,
            "state": np.ascontiguousarray(
                np.broadcast_to(self._initial, (batch, self._initial.size))
            ),
        }
        if self._time:
            given = inputs.get("timestamp")
            times = (
                np.asarray(given, dtype=np.float64)
                if given is not None
                else np.broadcast_to(self._period * np.arange(1, window + 1), (batch, window))
            )
            feed["time"] = np.ascontiguousarray(times)
        forecast = self._session.run(["forecast"], feed)[0]
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output(name="forecast", payload=forecast)],
        )


__all__ = ["WindowRuntime"]
