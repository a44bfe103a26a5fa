"""What the server and its models say about themselves, in the protocol's (JSON) form.

gRPC answers the same dicts, parsed into its messages (``service.api.kserve.grpc_codec``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from litestar.datastructures import State

from service import __version__
from service.api.kserve.sequences import V2Options
from service.api.kserve.wire import INPUT_TIMESTAMP, bad, brief
from service.errors import StoreBusy, StoreUnavailable
from service.manifest import INPUT_X, OUTPUT_FORECAST
from service.runtime import ModelRuntime

PLATFORM: Final = "onnxruntime_onnx"
SERVER_NAME: Final = "stateful-forecast"
EXTENSIONS: Final = (
    "binary_tensor_data",
    "model_configuration",
    "model_repository",
    "sequence",
    "sequence(string_id)",
)


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}


async def ready_problem(state: State) -> str | None:
    """Why the server is not ready (None: it is): start-up, no model, or the store."""
    if not state.get("started", False):
        return "start-up has not finished"
    if not state.registry.all():
        return "no model is loaded"
    try:
        await state.forecaster.store.ping()
    except StoreBusy:
        return None  # every connection in use is load, not ill health (as /health/ready)
    except StoreUnavailable as exc:
        return f"state store unreachable: {exc.detail}"
    return None


def parse_version(version: str | None) -> int | None:
    """A version from a URL or a request field ("" or None: the highest one served)."""
    if version is None or version == "":
        return None
    if not (version.isascii() and version.isdigit() and len(version) <= 18) or int(version) < 1:
        raise bad(f"model version must be a positive integer, got {brief(version)}")
    return int(version)


def model_metadata(runtime: ModelRuntime, versions: Sequence[int]) -> dict[str, Any]:
    """Triton's model metadata: client-visible tensors only, -1 for the variable axes."""
    return {
        "name": runtime.name,
        "versions": [str(v) for v in versions],
        "platform": PLATFORM,
        "inputs": [
            {"name": INPUT_X, "datatype": "FP32", "shape": [-1, -1, runtime.n_features]},
            {"name": INPUT_TIMESTAMP, "datatype": "FP64", "shape": [-1, -1]},
        ],
        "outputs": [
            {
                "name": OUTPUT_FORECAST,
                "datatype": "FP32",
                "shape": [-1, runtime.horizon, runtime.n_quantiles],
            }
        ],
    }


def model_config(runtime: ModelRuntime, options: V2Options) -> dict[str, Any]:
    """Triton's model configuration (JSON form); dims exclude the batch axis."""
    m = runtime.manifest

    def text(value: str) -> dict[str, str]:
        return {"string_value": value}

    return {
        "name": runtime.name,
        "platform": PLATFORM,
        "backend": "onnxruntime",
        "version_policy": {"all": {}},
        "max_batch_size": options.max_batch_size,
        "input": [
            {
                "name": INPUT_X,
                "data_type": "TYPE_FP32",
                "format": "FORMAT_NONE",
                "dims": [-1, runtime.n_features],
                "optional": False,
            },
            {
                "name": INPUT_TIMESTAMP,
                "data_type": "TYPE_FP64",
                "format": "FORMAT_NONE",
                "dims": [-1],
                "optional": True,
            },
        ],
        "output": [
            {
                "name": OUTPUT_FORECAST,
                "data_type": "TYPE_FP32",
                "dims": [runtime.horizon, runtime.n_quantiles],
            }
        ],
        "sequence_batching": {"max_sequence_idle_microseconds": options.idle_microseconds},
        "default_model_filename": "model.onnx",
        "parameters": {
            "version": text(str(runtime.version)),
            "kind": text(m.kind),
            "features": text(",".join(m.features)),
            "target": text(m.target),
            "frequency_seconds": text(format(m.frequency, "g")),
            "quantiles": text(",".join(format(q, "g") for q in m.quantiles)),
            "fingerprint": text(runtime.fingerprint),
        },
    }


__all__ = [
    "EXTENSIONS",
    "PLATFORM",
    "SERVER_NAME",
    "model_config",
    "model_metadata",
    "parse_version",
    "ready_problem",
    "server_metadata",
]
