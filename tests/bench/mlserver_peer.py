"""The stateless peer: MLServer serving the same ONNX model, recomputing a window per request.

What a user would run instead of this service: a KServe v2 server (MLServer 1.7.1, the
``bench`` extra) whose custom runtime feeds the last W readings ``x`` [B, W, F] through the
model from its initial state on every request, and answers the ``forecast`` [B, H, Q].
``python -m tests.bench.mlserver_peer --model-dir DIR --port N`` runs it the way the
benchmark does: one process (``parallel_workers`` 0, inference on the server's own event
loop as for the service's small calls), uvloop, no metrics server.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.redis_server import free_port

try:  # only where the bench extra is installed
    from mlserver import MLModel
    from mlserver.codecs import NumpyCodec
    from mlserver.types import InferenceRequest, InferenceResponse
except ImportError:  # pragma: no cover - the benchmark reports the peer as skipped
    MLModel = object  # type: ignore[assignment,misc]


class WindowRuntime(MLModel):  # type: ignore[misc,valid-type]
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


def write_settings(root: Path, model_dir: Path, name: str, port: int) -> None:
    """MLServer's settings.json and model-settings.json for one process on ``port``."""
    (root / "settings.json").write_text(
        json.dumps(
            {
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "metrics_endpoint": None,
                "parallel_workers": 0,
                "debug": False,
                "host": "127.0.0.1",
            }
        )
    )
    model = root / name
    model.mkdir(parents=True, exist_ok=True)
    (model / "model-settings.json").write_text(
        json.dumps(
            {
                "name": name,
                "implementation": "tests.bench.mlserver_peer.WindowRuntime",
                "parameters": {"uri": str(model_dir)},
            }
        )
    )


def command(root: Path) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from mlserver.cli.main import main; sys.argv[0] = 'mlserver'; main()",
        "start",
        str(root),
    ]


def available() -> bool:
    try:
        import mlserver  # noqa: F401
    except ImportError:
        return False
    return True


def spawn(model_dir: Path, name: str, port: int, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    root = Path(tempfile.mkdtemp(prefix="mlserver-"))
    write_settings(root, model_dir, name, port)
    env = {**os.environ, "PYTHONPATH": str(cwd), "MLSERVER_LOGGING_LEVEL": "WARNING"}
    with log.open("wb") as out:
        return subprocess.Popen(command(root), cwd=cwd, env=env, stdout=out, stderr=out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.mlserver_peer")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mlserver-"))
    write_settings(root, args.model_dir, args.model_dir.parent.name, args.port)
    os.execv(sys.executable, command(root))


if __name__ == "__main__":
    main()
