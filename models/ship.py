"""Writing one model version into a repository, for every kind: checked, or not at all.

Both exporters (:mod:`models.export` for the networks, :mod:`models.statistical` for the
statistical kinds) end here: the graph and its manifest are written, the fingerprint is
checked against the bytes on disk, and the directory is loaded with the service's own loader
(``load_runtime``: manifest, sha256, signature, a trial run). A version the service would
refuse is removed again, so a repository never holds a model that cannot be served.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from service.contract import PARITY_TOLERANCE, check_signature, step_parity_error
from service.errors import ModelRefused
from service.manifest import (
    INPUT_STATE,
    INPUT_TIME,
    INPUT_X,
    MANIFEST_FILE,
    ONNX_FILE,
    OUTPUT_FORECAST,
    OUTPUT_STATE,
    Manifest,
    file_sha256,
)
from service.runtime import load_runtime

FloatArray = npt.NDArray[np.float32]
TimeArray = npt.NDArray[np.float64]
#: ``run(x, state, time=None) -> (forecast, state_out)`` on a graph about to be shipped.
GraphRun = Callable[..., tuple[FloatArray, FloatArray]]


class ExportRefused(RuntimeError):
    """The exported graph does not behave like the model it came from: nothing is shipped."""


def contract_session(graph: bytes, manifest: Manifest) -> GraphRun:
    """An onnxruntime session on ``graph``, checked against the contract and ``manifest``,
    as a ``run(x, state, time=None)`` function (``time`` is fed to a graph that reads it).

    Raises:
        ExportRefused: the graph's inputs or outputs break the contract.
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(graph, sess_options=options, providers=["CPUExecutionProvider"])
    try:
        check_signature(session.get_inputs(), session.get_outputs(), manifest)
    except ModelRefused as exc:
        raise ExportRefused(f"exported graph breaks the contract's signature: {exc}") from exc

    def run(
        x: FloatArray, state: FloatArray, time: TimeArray | None = None
    ) -> tuple[FloatArray, FloatArray]:
        feeds: dict[str, Any] = {INPUT_X: x, INPUT_STATE: state}
        if manifest.time_input:
            feeds[INPUT_TIME] = time
        forecast, state_out = session.run([OUTPUT_FORECAST, OUTPUT_STATE], feeds)
        return forecast, state_out

    return run


def check_step_parity(
    run: GraphRun, x: FloatArray, state: FloatArray, time: TimeArray | None
) -> None:
    """Refuse a graph whose step-by-step forecasts drift from its whole-sequence call.

    Raises:
        ExportRefused: saying by how much, at which shape.
    """
    parity = step_parity_error(run, x, state, time)
    if not parity <= PARITY_TOLERANCE:
        batch, steps = x.shape[:2]
        raise ExportRefused(
            f"step-by-step inference with carried state differs from the whole-sequence call "
            f"by {parity:.3g} (relative) at B={batch}, T={steps}; allowed {PARITY_TOLERANCE:g}"
        )


def write_version(directory: Path, graph: bytes, manifest: Manifest) -> None:
    """Write ``model.onnx`` and ``model.json`` into ``directory`` and load them as the service
    would.

    Raises:
        ExportRefused: the bytes on disk differ from the manifest's fingerprint, or the
            service refuses the directory; ``directory`` holds neither file afterwards.
    """
    directory.mkdir(parents=True, exist_ok=True)
    onnx_path = directory / ONNX_FILE
    onnx_path.write_bytes(graph)
    try:
        if file_sha256(onnx_path) != manifest.sha256:
            raise ExportRefused(f"{onnx_path} changed while it was written")
        manifest.write(directory)
        try:
            load_runtime(directory, providers="cpu").close()
        except ModelRefused as exc:
            raise ExportRefused(f"the service refuses the exported model: {exc}") from exc
    except ExportRefused:
        onnx_path.unlink(missing_ok=True)
        (directory / MANIFEST_FILE).unlink(missing_ok=True)
        raise


def next_version(model_directory: Path) -> int:
    """One above the highest integer version directory (1 for a new model)."""
    if not model_directory.is_dir():
        return 1
    versions = [int(p.name) for p in model_directory.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


#: How the quantiles were calibrated (models.calibrate), for the manifest.
CALIBRATION = (
    "split-conformal offsets per horizon step and quantile level from the validation split "
    "(median unchanged), added inside the graph"
)


def provenance(meta: dict[str, Any], quality_gate: dict[str, Any] | None) -> dict[str, Any]:
    """The part of a training record every kind shares: seasons, gaps, scoring, the gate."""
    record: dict[str, Any] = {
        "seasons": list(meta.get("seasons", [])),
        "origins": "every test-split origin whose H targets lie in the test split",
        "baselines": "naive, seasonal naive of each season, damped-trend Holt-Winters on the "
        "shortest season and on the two longest (Taylor's double-seasonal), all fitted on "
        "train; their quantiles are their validation errors' conformal quantiles per step",
        "mase_scale": "in-sample one-step seasonal naive MAE of the shortest season on the "
        "training split",
    }
    if "gaps" in meta:
        record["gaps"] = meta["gaps"]
    if quality_gate is not None:
        record["quality_gate"] = quality_gate
    return record
