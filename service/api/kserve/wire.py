"""The v2 wire model: the request as typed structs, checked into one :class:`InferRequest`.

Both transports decode into the same structs. HTTP gives JSON (its header part) and the
binary extension's bytes; gRPC gives protobuf fields and ``raw_input_contents``, turned into
the same plain values first (``service.api.kserve.grpc_codec``). msgspec checks the
structure (types, required fields, non-negative shapes); :func:`check_request` then checks
what only the model knows (names, datatypes, shapes, sizes), so nothing downstream can fail
the model contract. Messages name the offending tensor or parameter as the client wrote it.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

import msgspec
import numpy as np
import numpy.typing as npt

from service.errors import InvalidInput
from service.forecaster import FloatArray
from service.ids import check_id, sequence_stream_id
from service.manifest import INPUT_X, OUTPUT_FORECAST
from service.runtime import ModelRuntime

#: Name of the optional input carrying each reading's epoch seconds.
INPUT_TIMESTAMP: Final = "timestamp"
_UINT64_MAX: Final = 2**64 - 1
#: Every axis of an input is below this; a larger one cannot be a real tensor.
_MAX_DIM: Final = 2**31
#: More axes than this are refused before numpy sees them (it stops at 64).
_MAX_RANK: Final = 8

#: Protocol datatype of each input, its NumPy dtype on the wire (little-endian), its axes.
INPUT_DATATYPES: Final[dict[str, tuple[str, np.dtype[Any], str]]] = {
    INPUT_X: ("FP32", np.dtype("<f4"), "[B, T, F]"),
    INPUT_TIMESTAMP: ("FP64", np.dtype("<f8"), "[B, T]"),
}
#: Outputs a request may ask for. Every answer carries ``forecast``; an output added here
#: (and produced by the core) may be asked for by name too.
OUTPUTS: Final[tuple[str, ...]] = (OUTPUT_FORECAST,)

# --- the wire structs ---------------------------------------------------------------------

_Dim = Annotated[int, msgspec.Meta(ge=0)]


class TensorParameters(msgspec.Struct, forbid_unknown_fields=True):
    """An input's parameters: only the binary extension's size."""

    binary_data_size: Annotated[int, msgspec.Meta(ge=0)] | None = None


class InputTensor(msgspec.Struct, kw_only=True):
    name: str
    datatype: str
    shape: list[_Dim]
    parameters: TensorParameters = msgspec.field(default_factory=TensorParameters)
    #: JSON data, flat or nested up to the rank (UNSET when the data is binary).
    data: Any = msgspec.UNSET


class OutputParameters(msgspec.Struct, forbid_unknown_fields=True):
    binary_data: bool | msgspec.UnsetType = msgspec.UNSET


class RequestedOutput(msgspec.Struct, kw_only=True):
    name: str
    parameters: OutputParameters = msgspec.field(default_factory=OutputParameters)


class RequestParameters(msgspec.Struct, kw_only=True):
    """Triton's request parameters; others (priority, timeout, ...) are accepted and unused."""

    sequence_id: int | str = 0
    sequence_start: bool = False
    sequence_end: bool = False
    binary_data_output: bool = False


class InferBody(msgspec.Struct, kw_only=True):
    """An inference request as both transports carry it."""

    inputs: Annotated[list[InputTensor], msgspec.Meta(min_length=1)]
    id: str | None = None
    parameters: RequestParameters = msgspec.field(default_factory=RequestParameters)
    outputs: list[RequestedOutput] | None = None


# --- the checked request ------------------------------------------------------------------


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
    #: Names of the outputs asked for (all of them when the request named none).
    outputs: tuple[str, ...] = field(default=OUTPUTS)


def bad(detail: str) -> InvalidInput:
    return InvalidInput(detail)


def brief(value: Any) -> str:
    """A client's value quoted in a message: its repr, cut short (a value may be megabytes)."""
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxdict = 2, 4, 4
    short.maxstring = short.maxother = 60
    return short.repr(value)


def decode_body(value: Any) -> InferBody:
    """The typed request of a decoded JSON object (or the same values made from protobuf).

    Raises:
        InvalidInput: msgspec's account of the first structural problem, with its path.
    """
    if not isinstance(value, dict):
        raise bad("the inference request must be a JSON object")
    try:
        return msgspec.convert(value, InferBody, strict=True)
    except msgspec.ValidationError as exc:
        raise bad(f"the inference request is invalid: {_readable(str(exc))}") from None


def _readable(message: str) -> str:
    """msgspec's message with its ``$.a[0].b`` path as ``a[0].b``."""
    return message.replace("`$.", "`").replace("`$`", "the request")


def check_request(
    body: InferBody,
    raw: Sequence[memoryview | None],
    runtime: ModelRuntime,
    max_batch_size: int,
) -> InferRequest:
    """Check every tensor's name, datatype, shape and data against the model's signature.

    ``raw[i]`` is the binary data of ``body.inputs[i]`` (None: its data is in ``data``).

    Raises:
        InvalidInput: naming the first problem found; nothing has been touched yet.
    """
    tensors: dict[str, npt.NDArray[Any]] = {}
    for tensor, data in zip(body.inputs, raw, strict=True):
        if tensor.name in tensors:
            raise bad(f"input {tensor.name!r} is given twice")
        tensors[tensor.name] = input_array(tensor, data)
    if INPUT_X not in tensors:
        raise bad(f"input {INPUT_X!r} is required")

    x = tensors[INPUT_X]
    features = runtime.n_features
    if x.ndim != 3 or x.shape[0] < 1 or x.shape[1] < 1 or x.shape[2] != features:
        raise bad(
            f"input {INPUT_X!r} must have shape [B, T, {features}] with B, T >= 1 "
            f"(model {runtime.name!r} takes {features} feature(s)), got {list(x.shape)}"
        )
    if x.shape[0] > max_batch_size:
        raise bad(f"batch size {x.shape[0]} exceeds the model's max_batch_size {max_batch_size}")
    timestamps = tensors.get(INPUT_TIMESTAMP)
    if timestamps is not None and timestamps.shape != x.shape[:2]:
        raise bad(
            f"input {INPUT_TIMESTAMP!r} must have shape {list(x.shape[:2])} (B and T of "
            f"{INPUT_X!r}), got {list(timestamps.shape)}"
        )
    sequence = sequence_control(body.parameters)
    if sequence is not None and x.shape[0] != 1:
        raise bad(f"a sequence step must have batch size 1, got {x.shape[0]}")
    binary, outputs = requested_outputs(body.outputs, body.parameters.binary_data_output)
    return InferRequest(
        request_id=body.id,
        x=x,
        timestamps=timestamps,
        sequence=sequence,
        binary_output=binary,
        outputs=outputs,
    )


def tensor_shape(tensor: InputTensor) -> tuple[str, np.dtype[Any], int]:
    """An input's datatype checked against the model's: its dtype and element count."""
    name = tensor.name
    if name not in INPUT_DATATYPES:
        known = ", ".join(repr(n) for n in INPUT_DATATYPES)
        raise bad(f"unknown input {brief(name)}; the model's inputs are {known}")
    datatype, dtype, axes = INPUT_DATATYPES[name]
    if tensor.datatype != datatype:
        raise bad(f"input {name!r} has datatype {datatype}, got {brief(tensor.datatype)}")
    shape = tensor.shape
    # Before any array is made: numpy refuses more than 64 axes, or an axis past 2**63. A
    # shape of a few axes too many gets the full shape check once its array is made.
    if len(shape) > _MAX_RANK:
        raise bad(f"input {name!r} has shape {axes}, got a shape of {len(shape)} axes")
    if any(d >= _MAX_DIM for d in shape):
        raise bad(f"input {name!r}: every axis of 'shape' is below {_MAX_DIM}, got {shape}")
    return datatype, dtype, math.prod(shape)


def input_array(tensor: InputTensor, raw: memoryview | None) -> npt.NDArray[Any]:
    """One input as an array of its shape, from its binary data or its ``data``."""
    name, shape = tensor.name, tensor.shape
    datatype, dtype, count = tensor_shape(tensor)
    if raw is not None:
        if tensor.data is not msgspec.UNSET:
            raise bad(f"input {name!r} has both 'data' and binary data")
        expected = count * dtype.itemsize
        if len(raw) != expected:
            raise bad(
                f"input {name!r} of shape {shape} and datatype {datatype} takes {expected} "
                f"bytes, but its binary data holds {len(raw)}"
            )
        return np.frombuffer(raw, dtype=dtype).reshape(shape)
    if tensor.data is msgspec.UNSET:
        raise bad(f"input {name!r} has neither 'data' nor a binary_data_size")
    values = _flatten(tensor.data, len(shape), name)
    if len(values) != count:
        raise bad(
            f"input {name!r} of shape {shape} needs {count} element(s), 'data' holds {len(values)}"
        )
    return np.asarray(values, dtype=np.float64).reshape(shape)


def _flatten(data: Any, rank: int, name: str) -> list[float]:
    """JSON ``data``, flat or nested up to the tensor's rank, as a flat list of numbers."""
    out: list[float] = []

    def walk(node: Any, depth: int) -> None:
        if isinstance(node, list):
            if depth >= rank:
                raise bad(f"input {name!r}: 'data' is nested deeper than the shape's rank")
            for item in node:
                walk(item, depth + 1)
        elif isinstance(node, int | float) and not isinstance(node, bool):
            try:
                out.append(float(node))
            except OverflowError:
                raise bad(f"input {name!r}: {brief(node)} is too large a number") from None
        else:
            raise bad(f"input {name!r}: 'data' must hold numbers, found {brief(node)}")

    if not isinstance(data, list):
        raise bad(f"input {name!r}: 'data' must be a list")
    walk(data, 0)
    return out


def sequence_control(parameters: RequestParameters) -> SequenceControl | None:
    start, end, sequence_id = (
        parameters.sequence_start,
        parameters.sequence_end,
        parameters.sequence_id,
    )
    if sequence_id == 0 or sequence_id == "":
        if start or end:
            raise bad("sequence_start and sequence_end need a non-zero sequence_id")
        return None
    if isinstance(sequence_id, int):
        if not 0 < sequence_id <= _UINT64_MAX:
            raise bad(f"sequence_id {brief(sequence_id)} is not an unsigned 64-bit integer")
    else:
        check_id(sequence_id, field="sequence_id", what="string sequence_id")
    return SequenceControl(stream_id=sequence_stream_id(sequence_id), start=start, end=end)


def requested_outputs(
    outputs: Sequence[RequestedOutput] | None, binary_default: bool
) -> tuple[bool, tuple[str, ...]]:
    """Whether the outputs go back as binary, and which ones were asked for."""
    if outputs is None:
        return binary_default, OUTPUTS
    binary = binary_default
    names: list[str] = []
    for entry in outputs:
        if entry.name not in OUTPUTS:
            known = ", ".join(repr(n) for n in OUTPUTS)
            raise bad(f"unknown output {brief(entry.name)}; the model's outputs are {known}")
        if entry.parameters.binary_data is not msgspec.UNSET:
            binary = entry.parameters.binary_data
        names.append(entry.name)
    # Every answer carries the forecast: it is what a step is for.
    ordered = tuple(n for n in OUTPUTS if n in names or n == OUTPUT_FORECAST)
    return binary, ordered


@dataclass(frozen=True, slots=True)
class OutputTensor:
    """One output of an answer, the same for both transports."""

    name: str
    datatype: str
    array: npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class InferAnswer:
    """What an inference answers, before a transport encodes it."""

    model: str
    version: int
    request_id: str | None
    outputs: list[OutputTensor]
    #: Extra response parameters (a sequence step: its reading's anomaly flag, see
    #: ``service.api.v2_scores``).
    parameters: Mapping[str, Any] = field(default_factory=dict)


__all__ = [
    "INPUT_DATATYPES",
    "INPUT_TIMESTAMP",
    "OUTPUTS",
    "InferAnswer",
    "InferBody",
    "InferRequest",
    "InputTensor",
    "OutputTensor",
    "RequestParameters",
    "RequestedOutput",
    "SequenceControl",
    "bad",
    "brief",
    "check_request",
    "decode_body",
    "input_array",
    "requested_outputs",
    "sequence_control",
]
