"""The model manifest (``model.json``): the one description shared by ``models/`` and ``service/``.

Pure pydantic with no service imports, so the training pipeline can write it and the service
can read it without either knowing the other.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ModelKind = Literal["lstm", "gru", "rnn", "mlp", "snaive", "ets"]

#: Names of the graph's inputs and outputs (see DESIGN.md, "The model contract").
INPUT_X = "x"
INPUT_STATE = "state"
#: The optional third input: each observation's time, float64 epoch seconds [B, T]. Only a
#: graph whose manifest sets ``time_input`` has it (see docs/model-contract.md).
INPUT_TIME = "time"
OUTPUT_FORECAST = "forecast"
OUTPUT_STATE = "state_out"

MANIFEST_FILE = "model.json"
ONNX_FILE = "model.onnx"


class Training(BaseModel):
    """How the model was trained: enough to reproduce it."""

    model_config = ConfigDict(extra="allow")

    dataset: str
    split: dict[str, Any] = Field(default_factory=dict)
    epochs: int | None = None
    seed: int | None = None


#: A model's name: also a directory of the repository, so never ``.``, ``..`` or a path.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Manifest(BaseModel):
    """Everything the service needs to know about one model version, next to its ONNX file."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    version: int = Field(ge=1)
    kind: ModelKind
    features: list[str] = Field(min_length=1)
    target: str
    frequency: float = Field(gt=0, description="Seconds between consecutive observations.")
    horizon: int = Field(ge=1)
    quantiles: list[float] = Field(min_length=1)
    state_size: int = Field(ge=1)
    initial_state: list[float] | None = None
    #: The graph takes a third input ``time``: float64 [B, T], the epoch seconds (UTC) of each
    #: observation in ``x``, from which it computes its own calendar features. The service
    #: passes the readings' timestamps; a graph without it never sees them.
    time_input: bool = False
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    opset: int = Field(ge=7)
    description: str = ""
    training: Training | None = None
    #: Held-out metrics per method, e.g. ``{"model": {"mase": 0.8}, "seasonal_naive": {...}}``.
    accuracy: dict[str, dict[str, float]] | None = None

    @field_validator("quantiles")
    @classmethod
    def _quantiles_sorted_in_unit_interval(cls, value: list[float]) -> list[float]:
        if any(not 0.0 < q < 1.0 for q in value):
            raise ValueError("quantiles must lie strictly between 0 and 1")
        if sorted(set(value)) != value:
            raise ValueError("quantiles must be strictly increasing")
        if 0.5 not in value:
            raise ValueError("quantiles must include the median, 0.5")
        return value

    @field_validator("features")
    @classmethod
    def _features_unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("feature names must be unique")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.target not in self.features:
            raise ValueError(f"target {self.target!r} is not one of the features")
        if self.initial_state is not None:
            if len(self.initial_state) != self.state_size:
                raise ValueError(
                    f"initial_state has {len(self.initial_state)} values, state_size is "
                    f"{self.state_size}"
                )
            if not all(math.isfinite(v) for v in self.initial_state):
                raise ValueError("initial_state must be finite")
        return self

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def median_index(self) -> int:
        return self.quantiles.index(0.5)

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        return cls.model_validate_json((directory / MANIFEST_FILE).read_bytes())

    def write(self, directory: Path) -> None:
        text = self.model_dump_json(indent=2, exclude_none=True)
        (directory / MANIFEST_FILE).write_text(text + "\n", encoding="utf-8")


def file_sha256(path: Path) -> str:
    """The model's fingerprint: sha256 of the ONNX file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
