"""Writing one model version into a repository, for every kind: checked, or not at all.

Both exporters (:mod:`models.export` for the networks, :mod:`models.statistical` for the
statistical kinds) end here: the graph and its manifest are written, the fingerprint is
checked against the bytes on disk, and the directory is loaded with the service's own loader
(``load_runtime``: manifest, sha256, signature, a trial run). A version the service would
refuse is removed again, so a repository never holds a model that cannot be served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.errors import ModelRefused
from service.manifest import MANIFEST_FILE, ONNX_FILE, Manifest, file_sha256
from service.runtime import load_runtime


class ExportRefused(RuntimeError):
    """The exported graph does not behave like the model it came from: nothing is shipped."""


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
