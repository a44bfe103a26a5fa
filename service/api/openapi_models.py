"""Typed descriptions of the answers whose handlers build plain dicts (model listings, health).

Documentation only: the handlers keep building their dicts; these pydantic models give the
OpenAPI document (through ``ResponseSpec``) the shapes those dicts have, and the schema fuzz
test checks every real answer against them.
"""

from __future__ import annotations

from typing import Any

from litestar.openapi.datastructures import ResponseSpec
from pydantic import BaseModel, Field


class ModelSummaryOut(BaseModel):
    """One model version's manifest, as the listings show it."""

    name: str
    version: int
    kind: str = Field(description="lstm, gru, or a baseline kind.")
    features: list[str] = Field(description="Input features, in the order readings give them.")
    target: str = Field(description="The feature forecast.")
    frequency: float = Field(description="Seconds between readings.")
    horizon: int = Field(description="Steps forecast.")
    quantiles: list[float]
    state_size: int = Field(description="Floats of recurrent state kept per stream.")
    fingerprint: str = Field(description="sha256 of the ONNX file.")
    providers: list[str] = Field(description="onnxruntime execution providers in use.")
    description: str | None = None


class ModelEntryOut(BaseModel):
    name: str
    versions: list[int] = Field(description="Versions served, lowest first.")
    latest: ModelSummaryOut


class ModelsOut(BaseModel):
    models: list[ModelEntryOut]


class ModelVersionOut(ModelSummaryOut):
    training: dict[str, Any] | None = Field(description="How the version was trained.")
    accuracy: dict[str, dict[str, float]] | None = Field(
        description="Held-out accuracy by metric and horizon, when recorded."
    )
    live: dict[str, Any] = Field(
        description=(
            "This replica's last hour of scored readings (window_seconds, scored, unscored, "
            "mae, naive_mae, relative_mae, coverage, mean_pinball, anomalies; null where "
            "nothing was scored)."
        )
    )
    headline: str = Field(description="The held-out MASE beside the last hour's figures.")


class ModelDetailOut(BaseModel):
    name: str
    latest: int = Field(description="The version that serves requests naming none.")
    versions: list[ModelVersionOut]


class LiveStatusOut(BaseModel):
    status: str = Field(description="Always 'ok'.")


class ModelHealthOut(BaseModel):
    providers: list[str]


class ReadinessOut(BaseModel):
    status: str = Field(description="'ready' or 'not ready'.")
    models: dict[str, ModelHealthOut] = Field(description="Served versions, '<name>/<version>'.")
    refused: dict[str, str] = Field(description="Version directories refused, and why.")
    store: str = Field(description="'ok', or why the state store is unavailable.")
    problems: list[str] | None = Field(default=None, description="Why not ready, when not.")


def answers(model: Any, description: str, *, status: int = 200) -> dict[int, ResponseSpec]:
    """``responses=`` of a handler that answers a dict shaped as ``model``."""
    return {
        status: ResponseSpec(data_container=model, description=description, generate_examples=False)
    }


__all__ = [
    "LiveStatusOut",
    "ModelDetailOut",
    "ModelSummaryOut",
    "ModelsOut",
    "ReadinessOut",
    "answers",
]
