"""The stateless peer: MLServer serving the same ONNX model, recomputing a window per request.

What a user would run instead of this service: a KServe v2 server (MLServer 1.7.1, the
``bench`` extra) whose custom runtime feeds the last W readings ``x`` [B, W, F] through the
model from its initial state on every request, and answers the ``forecast`` [B, H, Q].
``python -m tests.bench.mlserver_peer --model-dir DIR --port N`` runs it the way the
benchmark does: one process (``parallel_workers`` 0, inference on the server's own event
loop as for the service's small calls), uvloop, no metrics server. The runtime itself is in
``mlserver_runtime``, which only the MLServer process imports.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.redis_server import free_port


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
                "implementation": "tests.bench.mlserver_runtime.WindowRuntime",
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
    # Not imported here: see mlserver_runtime.
    return importlib.util.find_spec("mlserver") is not None


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
