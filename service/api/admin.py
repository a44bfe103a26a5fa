"""Model management at run time (admin keys only): re-scan, load and unload versions.

Loading a version creates and checks its session before it serves; unloading or replacing one
lets requests already running on it finish there. An unloaded version stays out of re-scans
(and of polling) until it is loaded again explicitly, as in Triton's explicit model control.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, post
from litestar.datastructures import State
from litestar.params import FromPath, PathParameter
from litestar.status_codes import HTTP_200_OK
from pydantic import BaseModel, Field

from service.errors import Conflict, ModelRefused
from service.lifecycle import ModelLifecycle
from service.registry import ReloadReport

Version = Annotated[int, PathParameter(description="Model version.", ge=1, le=999_999_999)]


class ReloadOut(BaseModel):
    """What a re-scan changed, each entry ``<name>/<version>``."""

    loaded: list[str] = Field(description="Versions that were not served and now are.")
    replaced: list[str] = Field(description="Versions whose files changed, now served anew.")
    unloaded: list[str] = Field(description="Versions whose directory is gone.")
    unchanged: list[str]
    refused: dict[str, str] = Field(description="Version directories refused, and why.")


class VersionOut(BaseModel):
    name: str
    version: int
    fingerprint: str = Field(description="sha256 of the ONNX file.")
    state: str = Field(description="'loaded' or 'unloaded'.")


def _reload_out(report: ReloadReport) -> ReloadOut:
    return ReloadOut(
        loaded=report.loaded,
        replaced=report.replaced,
        unloaded=report.unloaded,
        unchanged=report.unchanged,
        refused=report.refused,
    )


class AdminController(Controller):
    path = "/v1/admin/models"
    tags = ["admin"]
    opt: dict[str, Any] = {"role": "admin"}

    @post("/reload", summary="Re-scan the model repository", status_code=HTTP_200_OK)
    async def reload(self, state: State) -> ReloadOut:
        lifecycle: ModelLifecycle = state.lifecycle
        try:
            report = await lifecycle.reload()
        except ModelRefused as exc:
            raise Conflict(str(exc)) from exc
        return _reload_out(report)

    @post(
        "/{name:str}/versions/{version:int}/load",
        summary="Load (or reload) one version from the repository",
        status_code=HTTP_200_OK,
    )
    async def load(self, state: State, name: FromPath[str], version: Version) -> VersionOut:
        lifecycle: ModelLifecycle = state.lifecycle
        try:
            runtime = await lifecycle.load(name, version)
        except ModelRefused as exc:
            raise Conflict(
                f"model {name!r} version {version} cannot be served: {exc}", field="version"
            ) from exc
        return VersionOut(
            name=runtime.name,
            version=runtime.version,
            fingerprint=runtime.fingerprint,
            state="loaded",
        )

    @post(
        "/{name:str}/versions/{version:int}/unload",
        summary="Stop serving one version",
        status_code=HTTP_200_OK,
    )
    async def unload(self, state: State, name: FromPath[str], version: Version) -> VersionOut:
        lifecycle: ModelLifecycle = state.lifecycle
        runtime = await lifecycle.unload(name, version)
        return VersionOut(
            name=runtime.name,
            version=runtime.version,
            fingerprint=runtime.fingerprint,
            state="unloaded",
        )


__all__ = ["AdminController", "ReloadOut", "VersionOut"]
