"""Regenerate the v2 gRPC code in ``service/api/kserve/proto`` from the vendored .proto files.

Run from the repository root: ``python scripts/generate_proto.py`` (needs grpcio-tools and
mypy-protobuf, both in the ``dev`` extra). protoc writes ``import model_config_pb2``; the
imports are rewritten to be relative to the package, and the descriptors go into the
package's own pool (``proto/_pool.py`` says why) instead of protobuf's default one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

PROTO = Path(__file__).resolve().parent.parent / "service" / "api" / "kserve" / "proto"
FILES = ("grpc_service.proto", "model_config.proto")
_IMPORT = re.compile(r"^import (\w+_pb2)( as \w+)?$", re.MULTILINE)
_DEFAULT_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
_OWN_POOL = "from ._pool import POOL as _POOL\nDESCRIPTOR = _POOL.AddSerializedFile("


def main() -> None:
    bin_dir = str(Path(sys.executable).parent)  # protoc-gen-mypy lives beside the interpreter
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO}",
            f"--python_out={PROTO}",
            f"--grpc_python_out={PROTO}",
            f"--mypy_out={PROTO}",
            f"--mypy_grpc_out={PROTO}",
            *FILES,
        ],
        check=True,
        cwd=PROTO,
        env=env,
    )
    for path in [*PROTO.glob("*_pb2*.py"), *PROTO.glob("*_pb2*.pyi")]:
        text = path.read_text()
        fixed = _IMPORT.sub(r"from . import \1\2", text)
        if _DEFAULT_POOL in fixed:
            fixed = fixed.replace(_DEFAULT_POOL, _OWN_POOL)
        if fixed != text:
            path.write_text(fixed)
    for path in PROTO.glob("model_config_pb2_grpc.py*"):
        path.unlink()  # model_config.proto declares no service


if __name__ == "__main__":
    main()
