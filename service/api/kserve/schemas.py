"""The v2 answers and small bodies as pydantic models: what the OpenAPI document shows.

The dicts of ``describe`` and ``repository`` are the source; these only type them for the
document (examples: ``service.api.openapi_complete``). The schema fuzz test checks every real
answer against them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ServerMetadataOut(BaseModel):
    name: str
    version: str
    extensions: list[str] = Field(description="Protocol extensions served.")


class LiveOut(BaseModel):
    live: bool


class ReadyOut(BaseModel):
    ready: bool
    error: str | None = Field(default=None, description="Why not, while not ready.")


class TensorMetadataOut(BaseModel):
    name: str
    datatype: str = Field(description="FP32, FP64, ...")
    shape: list[int] = Field(description="-1 for a variable axis.")


class ModelMetadataOut(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadataOut]
    outputs: list[TensorMetadataOut]


class ModelReadyOut(BaseModel):
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
    ready: bool = Field(default=False, description="List only the versions served.")


class RepositoryModelIn(BaseModel):
    """Triton's load/unload body; its parameters are accepted and not used."""

    parameters: dict[str, Any] = Field(default_factory=dict)


class RepositoryDoneOut(BaseModel):
    """The empty answer of a load or unload that succeeded."""

    model_config = ConfigDict(extra="forbid")


class RepositoryEntryOut(BaseModel):
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
    "RepositoryDoneOut",
    "RepositoryEntryOut",
    "RepositoryIndexIn",
    "RepositoryModelIn",
    "ServerMetadataOut",
]
