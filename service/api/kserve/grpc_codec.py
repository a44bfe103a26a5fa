"""Protobuf messages to and from the shared wire model: nothing is checked here twice.

A ``ModelInferRequest`` becomes the plain values HTTP's JSON would have given (parameters as
their oneof's value, tensor contents as ``data``), then the same :func:`wire.decode_body`
types them; ``raw_input_contents`` become the inputs' binary data. Answers and model
descriptions go the other way, from the dicts both transports share.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from google.protobuf.json_format import ParseDict

from service.api.kserve.proto import grpc_service_pb2 as pb
from service.api.kserve.proto import model_config_pb2 as config_pb
from service.api.kserve.wire import InferAnswer, InferBody, bad, decode_body

#: The contents field of each datatype a tensor may carry its values in.
_CONTENTS = {
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "BOOL": "bool_contents",
}


def parameters(values: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """A parameter map as plain values (an unset oneof is left out)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        which = value.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(value, which)
    return out


def infer_body(request: pb.ModelInferRequest) -> tuple[InferBody, list[memoryview | None]]:
    """The typed request and each input's binary data (None: its values are in ``data``)."""
    raw_contents = list(request.raw_input_contents)
    if raw_contents and len(raw_contents) != len(request.inputs):
        raise bad(
            f"raw_input_contents holds {len(raw_contents)} tensor(s) for "
            f"{len(request.inputs)} input(s); give one per input, or none"
        )
    inputs: list[dict[str, Any]] = []
    for tensor in request.inputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        given = parameters(tensor.parameters)
        if given:
            entry["parameters"] = given
        if not raw_contents and tensor.HasField("contents"):
            field = _CONTENTS.get(tensor.datatype)
            if field is not None:
                entry["data"] = list(getattr(tensor.contents, field))
        inputs.append(entry)
    body: dict[str, Any] = {"inputs": inputs, "parameters": parameters(request.parameters)}
    if request.id:
        body["id"] = request.id
    if request.outputs:
        body["outputs"] = [
            {"name": o.name, **({"parameters": p} if (p := parameters(o.parameters)) else {})}
            for o in request.outputs
        ]
    raw: list[memoryview | None] = [memoryview(r) for r in raw_contents]
    return decode_body(body), raw or [None] * len(inputs)


def infer_response(answer: InferAnswer) -> pb.ModelInferResponse:
    """The answer with every output as ``raw_output_contents`` (what tritonclient reads)."""
    response = pb.ModelInferResponse(
        model_name=answer.model, model_version=str(answer.version), id=answer.request_id or ""
    )
    for tensor in answer.outputs:
        response.outputs.add(
            name=tensor.name, datatype=tensor.datatype, shape=list(tensor.array.shape)
        )
        data = np.ascontiguousarray(tensor.array)
        response.raw_output_contents.append(data.astype(data.dtype.newbyteorder("<")).tobytes())
    for key, value in answer.parameters.items():
        _set_parameter(response.parameters[key], value)
    return response


def _set_parameter(target: pb.InferParameter, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_param = value
    elif isinstance(value, int):
        target.int64_param = value
    elif isinstance(value, float):
        target.double_param = value
    else:
        target.string_param = str(value)


def model_metadata(metadata: dict[str, Any]) -> pb.ModelMetadataResponse:
    return ParseDict(metadata, pb.ModelMetadataResponse())


def model_config(config: dict[str, Any]) -> pb.ModelConfigResponse:
    return pb.ModelConfigResponse(config=ParseDict(config, config_pb.ModelConfig()))


def server_metadata(metadata: dict[str, Any]) -> pb.ServerMetadataResponse:
    return ParseDict(metadata, pb.ServerMetadataResponse())


def repository_index(entries: list[dict[str, Any]]) -> pb.RepositoryIndexResponse:
    return ParseDict({"models": entries}, pb.RepositoryIndexResponse())


__all__ = [
    "infer_body",
    "infer_response",
    "model_config",
    "model_metadata",
    "parameters",
    "repository_index",
    "server_metadata",
]
