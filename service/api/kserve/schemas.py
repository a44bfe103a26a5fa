"""The v2 answers and small bodies as pydantic models: what the OpenAPI document shows.

The dicts of ``describe`` and ``repository`` are the source; these only type them for the
document (and check, when a handler builds one, that the two agree).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ServerMetadataOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "name": "stateful-forecast",
                "version": "0.1.0",
                "extensions": ["binary_tensor_data", "model_repository", "sequence"],
            }
        }
    )
    name: str
    version: str
    extensions: list[str] = Field(description="Protocol extensions served.")


class LiveOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"live": True}})
    live: bool


class ReadyOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"ready": True}})
    ready: bool
    error: str | None = Field(default=None, description="Why not, while not ready.")


class TensorMetadataOut(BaseModel):
    name: str
    datatype: str = Field(description="FP32, FP64, ...")
    shape: list[int] = Field(description="-1 for a variable axis.")


class ModelMetadataOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "name": "demo-lstm",
                "versions": ["1"],
                "platform": "onnxruntime_onnx",
                "inputs": [
                    {"name": "x", "datatype": "FP32", "shape": [-1, -1, 2]},
                    {"name": "timestamp", "datatype": "FP64", "shape": [-1, -1]},
                ],
                "outputs": [{"name": "forecast", "datatype": "FP32", "shape": [-1, 4, 3]}],
            }
        }
    )
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadataOut]
    outputs: list[TensorMetadataOut]


class ModelReadyOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"example": {"name": "demo-lstm", "version": "1", "ready": True}}
    )
    name: str
    version: str
    ready: bool


class ConfigTensorOut(BaseModel):
    name: str
    data_type: str = Field(description="TYPE_FP32, TYPE_FP64, ...")
    format: str | None = None
    dims: list[int] = Field(description="Without the batch axis; -1 for a variable one.")
    optional: bool | None = None


class ModelConfigOut(BaseModel):
    """Triton's model configuration in its JSON form (the fields this service fills in)."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "name": "demo-lstm",
                "platform": "onnxruntime_onnx",
                "backend": "onnxruntime",
                "version_policy": {"all": {}},
                "max_batch_size": 64,
                "input": [
                    {
                        "name": "x",
                        "data_type": "TYPE_FP32",
                        "format": "FORMAT_NONE",
                        "dims": [-1, 2],
                        "optional": False,
                    }
                ],
                "output": [{"name": "forecast", "data_type": "TYPE_FP32", "dims": [4, 3]}],
                "sequence_batching": {"max_sequence_idle_microseconds": 86400000000},
                "default_model_filename": "model.onnx",
                "parameters": {"quantiles": {"string_value": "0.1,0.5,0.9"}},
            }
        }
    )
    name: str
    platform: str
    backend: str
    version_policy: dict[str, Any]
    max_batch_size: int
    input: list[ConfigTensorOut]
    output: list[ConfigTensorOut]
    sequence_batching: dict[str, int]
    default_model_filename: str
    parameters: dict[str, dict[str, str]] = Field(
        description="Model facts as Triton's string parameters: version, kind, features, "
        "target, frequency_seconds, quantiles, fingerprint."
    )


class RepositoryIndexIn(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"ready": True}})
    ready: bool = Field(default=False, description="List only the versions served.")


class RepositoryModelIn(BaseModel):
    """Triton's load/unload body; its parameters are accepted and not used."""

    model_config = ConfigDict(json_schema_extra={"example": {"parameters": {}}})
    parameters: dict[str, Any] = Field(default_factory=dict)


class RepositoryEntryOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {"name": "demo-lstm", "version": "1", "state": "READY", "reason": ""}
        }
    )
    name: str
    version: str
    state: str = Field(description="READY or UNAVAILABLE.")
    reason: str = Field(description="Why a version is UNAVAILABLE (empty when READY).")


__all__ = [
    "LiveOut",
    "ModelConfigOut",
    "ModelMetadataOut",
    "ModelReadyOut",
    "ReadyOut",
    "RepositoryEntryOut",
    "RepositoryIndexIn",
    "RepositoryModelIn",
    "ServerMetadataOut",
]
