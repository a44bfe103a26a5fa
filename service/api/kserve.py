"""The KServe Open Inference Protocol v2 (Triton's HTTP dialect), as a thin layer over the core.

Triton, KServe and MLServer clients (``tritonclient``, ``perf_analyzer``) talk to this router
unchanged. Every inference goes through the same :class:`~service.forecaster.Forecaster` as
the REST API: this module only translates tensors and sequence flags into its calls.

How the protocol maps onto the service
--------------------------------------
Tensors (row-major, little-endian; JSON ``data`` flat or nested, or the binary extension):

- input ``x``, FP32, shape ``[B, T, F]``: T new readings of the model's F features for B
  series. Only rank 3 is accepted (the shape the metadata advertises), so a request never
  means two things.
- optional input ``timestamp``, FP64, shape ``[B, T]``: epoch seconds of each reading.
- output ``forecast``, FP32, shape ``[B, H, Q]``: H future steps, Q quantiles (the order of
  the config's ``quantiles`` parameter). The recurrent ``state`` is never exposed.

Without ``parameters.sequence_id`` (or with 0 / ``""``, Triton's "no sequence") an inference
is a stateless forecast of B whole series from the initial state.

With a ``sequence_id`` (unsigned 64-bit integer, or a string of the stream id rule of
``service.ids``: any text of 1-256 UTF-8 bytes without control characters, so ``"Kühlhaus 3"``
and ``"plant/line-1"`` are sequence ids) the request is one step of a stream of the caller's
tenant, and B must be 1 (as in Triton's sequence batcher). Sequence ids live in their own
namespace of stream ids, so they never collide with REST streams: the integer 42 is stream
``v2:42`` and the string ``"pump-7"`` is stream ``v2:s:pump-7``; the REST API can read or
delete them under those ids (percent-encoded in the path).

- ``sequence_start`` (re)creates the stream from the initial state, bound to the model (and
  version) of the URL, then applies the step; a start on an active id resets it.
- A step without start on an unknown (never started, ended or idle-expired) id is a 400.
- ``sequence_end`` applies the step, returns its forecast, then forgets the stream.
- Steps of one sequence apply in arrival order, each exactly once, even when several are in
  flight: within a process a FIFO lock per sequence orders them; across processes the core's
  compare-and-set does.

Time. The core de-duplicates by timestamp (a reading at or before the stream's last one is
skipped), which is what makes at-least-once senders safe. A request carrying ``timestamp``
gets exactly that: a retried step is skipped and answered with the current forecast. Triton
clients send no time at all, so for them the core stamps each step itself, under the same
compare-and-set as the state it makes: the request's last reading one model period after the
stream's last timestamp (0 for a fresh stream), its earlier readings evenly in between. Every
step therefore moves the stream's clock by one period, whatever its T; a step that lost a
race with another replica is stamped again after the winner and applied. Such a step is not
idempotent: a client that retries a step it already sent must send ``timestamp`` to be
de-duplicated.

Load tools: ``perf_analyzer`` fills every input the metadata lists, ``timestamp`` included;
give it ``--input-data`` with ``x`` alone (or real increasing times), or random times will
make most sequence steps duplicates that are skipped rather than applied.

Errors are non-200 with ``{"error": "..."}`` (scoped to this router; REST keeps
problem+json). Bad requests are rejected before any state is touched. A path or method that
matches no v2 route is refused by the app's router before this one is reached, so it gets
the app-wide problem+json 404/405.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import reprlib
import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
from litestar import Controller, Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import FromPath
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from service import __version__, errors, request_id
from service.api.bodies import decode_json
from service.api.v2_scores import step_parameters
from service.core.observations import synthetic_times
from service.errors import (
    Conflict,
    InvalidInput,
    PayloadTooLarge,
    StoreUnavailable,
    UnknownStream,
    WrongModel,
)
from service.forecaster import FloatArray, Forecaster, Observations, ObserveResult
from service.ids import (
    SEQUENCE_PREFIX,
    STRING_SEQUENCE_PREFIX,
    check_id,
    sequence_stream_id,
    shown,
)
from service.manifest import INPUT_X, OUTPUT_FORECAST
from service.registry import ModelRegistry
from service.runtime import ModelRuntime
from service.settings import Settings

log = logging.getLogger(__name__)

#: Name of the optional input carrying each reading's epoch seconds.
INPUT_TIMESTAMP: Final = "timestamp"
#: Header that splits a binary request or response into its JSON part and its tensor bytes.
HEADER_LENGTH: Final = "Inference-Header-Content-Length"
PLATFORM: Final = "onnxruntime_onnx"
SERVER_NAME: Final = "stateful-forecast"
EXTENSIONS: Final = (
    "binary_tensor_data",
    "model_configuration",
    "sequence",
    "sequence(string_id)",
)
#: Stream ids of v2 sequences: ``v2:<uint>`` and ``v2:s:<string>`` (``service.ids``).
STREAM_PREFIX: Final = SEQUENCE_PREFIX
_UINT64_MAX: Final = 2**64 - 1
#: Every axis of an input is below this; a larger one cannot be a real tensor.
_MAX_DIM: Final = 2**31
#: More axes than this are refused before numpy sees them (it stops at 64).
_MAX_RANK: Final = 8

#: Protocol datatype of each input, its NumPy dtype on the wire (little-endian), its axes.
_INPUT_DATATYPES: Final[dict[str, tuple[str, np.dtype[Any], str]]] = {
    INPUT_X: ("FP32", np.dtype("<f4"), "[B, T, F]"),
    INPUT_TIMESTAMP: ("FP64", np.dtype("<f8"), "[B, T]"),
}

#: Domain error -> status in the v2 form. A step on an unknown sequence is the client's
#: error (400, as in Triton), not a missing resource.
_STATUS: Final[dict[type[errors.ForecastError], int]] = {
    errors.MalformedInput: 400,
    errors.InvalidInput: 400,
    errors.UnknownStream: 400,
    errors.UnknownModel: 404,
    errors.StateMismatch: 409,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.StreamLimitExceeded: 403,
    errors.ModelNotReady: 503,
    errors.ModelFailed: 503,
    errors.StoreUnavailable: 503,
}


@dataclass(frozen=True, slots=True)
class V2Options:
    """The settings the v2 routes report or enforce."""

    max_batch_size: int
    idle_microseconds: int
    max_body_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> V2Options:
        return cls(
            max_batch_size=settings.max_series,
            idle_microseconds=int(settings.stream_ttl_seconds * 1_000_000),
            max_body_bytes=settings.max_body_bytes,
        )


class SequenceLocks:
    """One FIFO lock per sequence, dropped when nobody holds or waits for it.

    The core applies a stream's observations in the order they are handed to it, but a step
    may also (re)create the stream (``sequence_start``) or forget it (``sequence_end``);
    holding this lock across the whole step keeps a sequence's steps, starts and ends in the
    order they arrived.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


# --- the request, parsed ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SequenceControl:
    """Triton's sequence parameters of one request."""

    stream_id: str
    start: bool
    end: bool


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A checked inference request: nothing in it can fail the model contract's shapes."""

    request_id: str | None
    x: npt.NDArray[np.float64] | FloatArray  # [B, T, F]
    timestamps: npt.NDArray[np.float64] | None  # [B, T]
    sequence: SequenceControl | None
    binary_output: bool


def _bad(detail: str) -> InvalidInput:
    return InvalidInput(detail)


def _brief(value: Any) -> str:
    """A client's value quoted in a message: its repr, cut short (a value may be megabytes)."""
    brief = reprlib.Repr()
    brief.maxlevel, brief.maxlist, brief.maxdict = 2, 4, 4
    brief.maxstring = brief.maxother = 60
    return brief.repr(value)


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    """The JSON inference header and the binary tensor bytes that follow it."""
    if header_length is None:
        json_part, binary = body, memoryview(b"")
    else:
        try:
            length = int(header_length)
        except ValueError:
            raise _bad(f"{HEADER_LENGTH} must be an integer, got {_brief(header_length)}") from None
        if not 0 < length <= len(body):
            raise _bad(
                f"{HEADER_LENGTH} is {length} but the body holds {len(body)} bytes; it must "
                "be the length of the JSON part"
            )
        json_part, binary = body[:length], memoryview(body)[length:]
    header = decode_json(json_part, "the inference request")
    if not isinstance(header, dict):
        raise _bad("the inference request must be a JSON object")
    return header, binary


def parse_infer_request(
    header: dict[str, Any], binary: memoryview, runtime: ModelRuntime, max_batch_size: int
) -> InferRequest:
    """Check every tensor's name, datatype, shape and data against the model's signature.

    Raises:
        InvalidInput: naming the first problem found; nothing has been touched yet.
    """
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _bad("'id' must be a string")
    parameters = _object(header.get("parameters", {}), "parameters")
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _bad("'inputs' must be a non-empty list of tensors")

    tensors: dict[str, npt.NDArray[Any]] = {}
    offset = 0
    for index, entry in enumerate(inputs):
        name, array, used = _input_tensor(entry, index, binary, offset)
        if name in tensors:
            raise _bad(f"input {name!r} is given twice")
        tensors[name] = array
        offset += used
    if offset != len(binary):
        raise _bad(
            f"the binary part of the body holds {len(binary)} bytes but the inputs' "
            f"binary_data_size add up to {offset}"
        )
    if INPUT_X not in tensors:
        raise _bad(f"input {INPUT_X!r} is required")

    x = tensors[INPUT_X]
    features = runtime.n_features
    if x.ndim != 3 or x.shape[0] < 1 or x.shape[1] < 1 or x.shape[2] != features:
        raise _bad(
            f"input {INPUT_X!r} must have shape [B, T, {features}] with B, T >= 1 "
            f"(model {runtime.name!r} takes {features} feature(s)), got {list(x.shape)}"
        )
    if x.shape[0] > max_batch_size:
        raise _bad(f"batch size {x.shape[0]} exceeds the model's max_batch_size {max_batch_size}")
    timestamps = tensors.get(INPUT_TIMESTAMP)
    if timestamps is not None and timestamps.shape != x.shape[:2]:
        raise _bad(
            f"input {INPUT_TIMESTAMP!r} must have shape {list(x.shape[:2])} (B and T of "
            f"{INPUT_X!r}), got {list(timestamps.shape)}"
        )

    sequence = _sequence_control(parameters)
    if sequence is not None and x.shape[0] != 1:
        raise _bad(f"a sequence step must have batch size 1, got {x.shape[0]}")
    binary_output = _requested_outputs(
        header.get("outputs"), _flag(parameters, "binary_data_output")
    )
    return InferRequest(
        request_id=request_id,
        x=x,
        timestamps=timestamps,
        sequence=sequence,
        binary_output=binary_output,
    )


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"{what!r} must be a JSON object")
    return value


def _flag(parameters: dict[str, Any], key: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise _bad(f"parameter {key!r} must be true or false, got {_brief(value)}")
    return value


def _input_tensor(
    entry: Any, index: int, binary: memoryview, offset: int
) -> tuple[str, npt.NDArray[Any], int]:
    """One input as an array of its shape, and how many binary bytes it consumed."""
    where = f"inputs[{index}]"
    entry = _object(entry, where)
    name = entry.get("name")
    if not isinstance(name, str):
        raise _bad(f"{where} needs a string 'name'")
    if name not in _INPUT_DATATYPES:
        known = ", ".join(repr(n) for n in _INPUT_DATATYPES)
        raise _bad(f"unknown input {_brief(name)}; the model's inputs are {known}")
    datatype, dtype, axes = _INPUT_DATATYPES[name]
    if entry.get("datatype") != datatype:
        raise _bad(f"input {name!r} has datatype {datatype}, got {_brief(entry.get('datatype'))}")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise _bad(f"input {name!r} needs 'shape', a list of non-negative integers")
    # Before any array is made: numpy refuses more than 64 axes, or an axis past 2**63. A
    # shape of a few axes too many gets the full shape check once its array is made.
    if len(shape) > _MAX_RANK:
        raise _bad(f"input {name!r} has shape {axes}, got a shape of {len(shape)} axes")
    if any(d >= _MAX_DIM for d in shape):
        raise _bad(f"input {name!r}: every axis of 'shape' is below {_MAX_DIM}, got {shape}")
    count = math.prod(shape)
    parameters = _object(entry.get("parameters", {}), f"{where}.parameters")
    unsupported = sorted(k for k in parameters if k != "binary_data_size")
    if unsupported:
        raise _bad(f"input {name!r} has unsupported parameter(s) {_brief(unsupported)}")
    size = parameters.get("binary_data_size")
    if size is not None:
        if "data" in entry:
            raise _bad(f"input {name!r} has both 'data' and a binary_data_size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _bad(f"input {name!r}: binary_data_size must be a non-negative integer")
        expected = count * dtype.itemsize
        if size != expected:
            raise _bad(
                f"input {name!r} of shape {shape} and datatype {datatype} takes {expected} "
                f"bytes, but binary_data_size is {size}"
            )
        if offset + size > len(binary):
            raise _bad(
                f"input {name!r} needs bytes {offset}..{offset + size} of the binary part, "
                f"which holds only {len(binary)}"
            )
        array = np.frombuffer(binary[offset : offset + size], dtype=dtype).reshape(shape)
        return name, array, size
    if "data" not in entry:
        raise _bad(f"input {name!r} has neither 'data' nor a binary_data_size")
    values = _flatten(entry["data"], len(shape), name)
    if len(values) != count:
        raise _bad(
            f"input {name!r} of shape {shape} needs {count} element(s), 'data' holds {len(values)}"
        )
    return name, np.asarray(values, dtype=np.float64).reshape(shape), 0


def _flatten(data: Any, rank: int, name: str) -> list[float]:
    """JSON ``data``, flat or nested up to the tensor's rank, as a flat list of numbers."""
    out: list[float] = []

    def walk(node: Any, depth: int) -> None:
        if isinstance(node, list):
            if depth >= rank:
                raise _bad(f"input {name!r}: 'data' is nested deeper than the shape's rank")
            for item in node:
                walk(item, depth + 1)
        elif isinstance(node, int | float) and not isinstance(node, bool):
            try:
                out.append(float(node))
            except OverflowError:
                raise _bad(f"input {name!r}: {_brief(node)} is too large a number") from None
        else:
            raise _bad(f"input {name!r}: 'data' must hold numbers, found {_brief(node)}")

    if not isinstance(data, list):
        raise _bad(f"input {name!r}: 'data' must be a list")
    walk(data, 0)
    return out


def _sequence_control(parameters: dict[str, Any]) -> SequenceControl | None:
    start = _flag(parameters, "sequence_start")
    end = _flag(parameters, "sequence_end")
    sequence_id = parameters.get("sequence_id", 0)
    if sequence_id == 0 or sequence_id == "":
        if start or end:
            raise _bad("sequence_start and sequence_end need a non-zero sequence_id")
        return None
    if isinstance(sequence_id, bool) or not isinstance(sequence_id, int | str):
        raise _bad(
            f"sequence_id must be an unsigned integer or a string, got {_brief(sequence_id)}"
        )
    if isinstance(sequence_id, int):
        if not 0 < sequence_id <= _UINT64_MAX:
            raise _bad(f"sequence_id {_brief(sequence_id)} is not an unsigned 64-bit integer")
    else:
        check_id(sequence_id, field="sequence_id", what="string sequence_id")
    return SequenceControl(stream_id=sequence_stream_id(sequence_id), start=start, end=end)


def _requested_outputs(outputs: Any, binary_default: bool) -> bool:
    """Whether ``forecast`` goes back as binary; it is the only output there is."""
    if outputs is None:
        return binary_default
    if not isinstance(outputs, list):
        raise _bad("'outputs' must be a list")
    binary = binary_default
    for index, entry in enumerate(outputs):
        entry = _object(entry, f"outputs[{index}]")
        if entry.get("name") != OUTPUT_FORECAST:
            raise _bad(
                f"unknown output {_brief(entry.get('name'))}; the model's only output is "
                f"{OUTPUT_FORECAST!r}"
            )
        parameters = _object(entry.get("parameters", {}), f"outputs[{index}].parameters")
        unsupported = sorted(k for k in parameters if k != "binary_data")
        if unsupported:
            raise _bad(
                f"output {OUTPUT_FORECAST!r} has unsupported parameter(s) {_brief(unsupported)}"
            )
        binary = _flag(parameters, "binary_data") if "binary_data" in parameters else binary
    return binary


def encode_response(
    model: str,
    version: int,
    request_id: str | None,
    forecast: FloatArray,
    *,
    binary: bool,
    parameters: dict[str, Any] | None = None,
) -> Response[bytes]:
    """The inference response; a binary ``forecast`` follows the JSON part in the body."""
    output: dict[str, Any] = {
        "name": OUTPUT_FORECAST,
        "datatype": "FP32",
        "shape": list(forecast.shape),
    }
    raw = b""
    if binary:
        raw = np.ascontiguousarray(forecast, dtype="<f4").tobytes()
        output["parameters"] = {"binary_data_size": len(raw)}
    else:
        # No "parameters" here: Triton's C++ client reads one as "the data is binary".
        output["data"] = forecast.ravel().tolist()
    body: dict[str, Any] = {"model_name": model, "model_version": str(version)}
    if request_id is not None:
        body["id"] = request_id
    if parameters is not None:
        body["parameters"] = parameters
    body["outputs"] = [output]
    head = json.dumps(body, separators=(",", ":")).encode()
    if not binary:
        return Response(head, media_type="application/json")
    return Response(
        head + raw,
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(head))},
    )


# --- model descriptions ------------------------------------------------------------------


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


def _version(version: str | None) -> int | None:
    if version is None or version == "":
        return None
    if not (version.isascii() and version.isdigit() and len(version) <= 18) or int(version) < 1:
        raise _bad(f"model version must be a positive integer, got {_brief(version)}")
    return int(version)


# --- handlers ----------------------------------------------------------------------------

_MODEL = "/models/{name:str}"
_VERSION = "/models/{name:str}/versions/{version:str}"


class KServeController(Controller):
    """The v2 endpoints; mounted under ``/v2`` by :func:`v2_router`."""

    path = ""
    tags = ["kserve-v2"]

    @get("/", summary="Server metadata")
    async def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    @get("/health/live", summary="The server is up")
    async def live(self) -> dict[str, bool]:
        return {"live": True}

    @get("/health/ready", summary="Every model loaded and the state store reachable")
    async def ready(self, state: State) -> Response[dict[str, Any]]:
        problem = None
        if not state.get("started", False):
            problem = "start-up has not finished"
        elif not state.registry.all():
            problem = "no model is loaded"
        else:
            try:
                await state.forecaster.store.ping()
            except StoreUnavailable as exc:
                problem = f"state store unreachable: {exc.detail}"
        if problem is not None:
            return Response(
                {"ready": False, "error": problem}, status_code=503, headers={"Retry-After": "1"}
            )
        return Response({"ready": True})

    @get([_MODEL, _VERSION], summary="Model metadata")
    async def metadata(
        self,
        registry: NamedDependency[ModelRegistry],
        name: FromPath[str],
        version: FromPath[str | None] = None,
    ) -> dict[str, Any]:
        number = _version(version)
        runtime = registry.get(name, number)
        served = [runtime.version] if number else [r.version for r in registry.versions(name)]
        return model_metadata(runtime, served)

    @get([f"{_MODEL}/ready", f"{_VERSION}/ready"], summary="Whether the model can infer")
    async def model_ready(
        self,
        registry: NamedDependency[ModelRegistry],
        name: FromPath[str],
        version: FromPath[str | None] = None,
    ) -> Response[dict[str, Any]]:
        runtime = registry.get(name, _version(version))
        body = {"name": runtime.name, "version": str(runtime.version), "ready": not runtime.closed}
        return Response(body, status_code=200 if not runtime.closed else 503)

    @get([f"{_MODEL}/config", f"{_VERSION}/config"], summary="Model configuration (Triton)")
    async def config(
        self,
        registry: NamedDependency[ModelRegistry],
        v2_options: NamedDependency[V2Options],
        name: FromPath[str],
        version: FromPath[str | None] = None,
    ) -> dict[str, Any]:
        return model_config(registry.get(name, _version(version)), v2_options)

    @post(
        [f"{_MODEL}/infer", f"{_VERSION}/infer"],
        summary="Inference: stateless, or one step of a sequence",
        status_code=200,
    )
    async def infer(
        self,
        request: Request[Any, Any, Any],
        forecaster: NamedDependency[Forecaster],
        registry: NamedDependency[ModelRegistry],
        tenant: NamedDependency[str],
        v2_options: NamedDependency[V2Options],
        v2_locks: NamedDependency[SequenceLocks],
        name: FromPath[str],
        version: FromPath[str | None] = None,
    ) -> Response[bytes]:
        number = _version(version)
        runtime = registry.get(name, number)
        body = _decode(
            await request.body(), request.headers.get("content-encoding"), v2_options.max_body_bytes
        )
        header, binary = split_body(body, request.headers.get(HEADER_LENGTH))
        parsed = parse_infer_request(header, binary, runtime, v2_options.max_batch_size)
        parameters = None
        if parsed.sequence is None:
            values = await _stateless(forecaster, runtime, parsed)
            model, served = runtime.name, runtime.version
        else:
            # Taken with no await since the body was parsed: steps queue in arrival order.
            async with v2_locks.hold(f"{tenant}/{parsed.sequence.stream_id}"):
                result = await _step(forecaster, tenant, runtime, number, parsed, parsed.sequence)
            forecast = result.stream.forecast
            if forecast is None:
                raise Conflict("the sequence has no forecast yet", field="sequence_id")
            values = forecast.values[None]
            model, served = result.stream.model, result.stream.version
            parameters = step_parameters(result)
        return encode_response(
            model,
            served,
            parsed.request_id,
            values,
            binary=parsed.binary_output,
            parameters=parameters,
        )


def _decode(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body without its ``Content-Encoding`` (gzip and deflate, as tritonclient sends)."""
    if encoding is None or encoding.strip().lower() in {"", "identity"}:
        return body
    kind = encoding.strip().lower()
    if kind not in {"gzip", "deflate"}:
        raise _bad(f"unsupported Content-Encoding {_brief(encoding)}; use gzip or deflate")
    inflater = zlib.decompressobj(wbits=31 if kind == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise _bad(f"the {kind} body cannot be decompressed: {exc}") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"the decompressed body exceeds {limit} bytes")
    if not inflater.eof:
        raise _bad(f"the {kind} body is truncated")
    return out


def _series(parsed: InferRequest, runtime: ModelRuntime, row: int) -> Observations:
    steps = int(parsed.x.shape[1])
    if parsed.timestamps is not None:
        times = parsed.timestamps[row]
    else:
        times = synthetic_times(None, steps, runtime.manifest.frequency)
    return Observations.build(
        cast(Sequence[float], times),
        cast(Sequence[Sequence[float]], parsed.x[row]),
        field=f"x[{row}]",
    )


async def _stateless(
    forecaster: Forecaster, runtime: ModelRuntime, parsed: InferRequest
) -> FloatArray:
    series = [_series(parsed, runtime, row) for row in range(int(parsed.x.shape[0]))]
    forecasts = await forecaster.forecast(runtime.name, runtime.version, series)
    return np.stack([f.values for f in forecasts])


async def _step(
    forecaster: Forecaster,
    tenant: str,
    runtime: ModelRuntime,
    version: int | None,
    parsed: InferRequest,
    sequence: SequenceControl,
) -> ObserveResult:
    """Apply one sequence step through the core; the caller holds the sequence's lock."""
    stream_id = sequence.stream_id
    if sequence.start:
        result = await forecaster.create_stream(
            tenant, stream_id, runtime.name, runtime.version, _series(parsed, runtime, 0)
        )
    else:
        if parsed.timestamps is not None:
            obs = _series(parsed, runtime, 0)
        else:
            obs = Observations.untimed(parsed.x[0], field="x[0]")
        try:
            result = await forecaster.observe(
                tenant, stream_id, obs, require=(runtime.name, version)
            )
        except UnknownStream:
            raise UnknownStream(
                f"sequence {_shown(stream_id)} is not active (never started, ended, or idle "
                "past max_sequence_idle_microseconds); start it with sequence_start",
                field="sequence_id",
            ) from None
        except WrongModel as exc:
            raise _bad(
                f"sequence {_shown(stream_id)} runs model {exc.model!r} "
                f"version {exc.version}; send its steps to that model"
            ) from None
    if sequence.end:
        # Expired or ended elsewhere in the meantime: forgotten either way.
        with contextlib.suppress(UnknownStream):
            await forecaster.delete_stream(tenant, stream_id)
    return result


def _shown(stream_id: str) -> str:
    """The sequence id as the client sent it (a string one quoted, escaped and cut short)."""
    if stream_id.startswith(STRING_SEQUENCE_PREFIX):
        return shown(stream_id.removeprefix(STRING_SEQUENCE_PREFIX))
    return stream_id.removeprefix(SEQUENCE_PREFIX)


# --- errors in the protocol's form -------------------------------------------------------


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response[Any]:
    # Clients of the protocol read "error" alone (tritonclient does); the id rides beside it.
    body = {"error": message}
    rid = request_id.current()
    if rid is not None:
        body["request_id"] = rid
    return Response(body, status_code=status, headers=headers)


def _domain_error(_: Request[Any, Any, Any], exc: errors.ForecastError) -> Response[Any]:
    status = next((_STATUS[c] for c in type(exc).__mro__ if c in _STATUS), 400)
    headers = None
    if isinstance(exc, StoreUnavailable):
        headers = {"Retry-After": str(exc.retry_after)}
    message = exc.detail if exc.field is None else f"{exc.detail} (at {exc.field})"
    return _error(status, message, headers)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    message = str(exc.detail)
    if isinstance(exc.extra, list) and exc.extra:
        message += ": " + "; ".join(str(item) for item in exc.extra)
    return _error(exc.status_code, message, exc.headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(HTTP_500_INTERNAL_SERVER_ERROR, "internal server error; it has been logged")


def _exception_handlers() -> ExceptionHandlersMap:
    # Every key of the app-wide table is overridden here, so no problem+json leaks into v2.
    return {
        errors.ForecastError: _domain_error,
        ValidationException: _http_error,
        HTTPException: _http_error,
        Exception: _unexpected,
    }


def v2_router(settings: Settings) -> Router:
    """The ``/v2`` router of one app, with its own error form and sequence locks."""
    options = V2Options.of(settings)
    locks = SequenceLocks()
    return Router(
        path="/v2",
        route_handlers=[KServeController],
        dependencies={
            "v2_options": Provide(lambda: options, sync_to_thread=False),
            "v2_locks": Provide(lambda: locks, sync_to_thread=False),
        },
        exception_handlers=_exception_handlers(),
    )


__all__ = [
    "EXTENSIONS",
    "HEADER_LENGTH",
    "INPUT_TIMESTAMP",
    "STREAM_PREFIX",
    "InferRequest",
    "KServeController",
    "SequenceControl",
    "SequenceLocks",
    "V2Options",
    "encode_response",
    "model_config",
    "model_metadata",
    "parse_infer_request",
    "split_body",
    "v2_router",
]
