"""Check model directories made anywhere against the contract, with the service's own checks.

Nothing here re-implements the contract: loading goes through ``service.runtime.load_runtime``
(manifest, sha256, signature, trial run) and parity through ``service.contract``. What this
adds is what a loader cannot know from one call: the step-parity invariant on several batch
sizes and lengths, that the directory's name and version match its manifest, and a warning
when the manifest's own accuracy says the model loses to a baseline (:mod:`models.gate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.gate import judge
from service.contract import PARITY_TOLERANCE, step_parity_error
from service.errors import ModelRefused
from service.manifest import MANIFEST_FILE, Manifest
from service.runtime import load_runtime

#: (batch, time) pairs of the parity check: B > 1, and B = 1 for completeness.
PARITY_SHAPES = ((3, 12), (1, 5), (8, 2))


@dataclass(frozen=True)
class Verdict:
    """The outcome for one version directory."""

    directory: Path
    ok: bool
    detail: str
    #: Something a user should know although the model is servable (it loses to a baseline).
    warning: str | None = None


def accuracy_warning(manifest: Manifest) -> str | None:
    """A warning when the manifest's test accuracy says a baseline beats the model."""
    if not manifest.accuracy or "model" not in manifest.accuracy or len(manifest.accuracy) < 2:
        return None
    try:
        verdict = judge(manifest.accuracy)
    except (KeyError, ValueError):
        return None
    if verdict.passed:
        return None
    beaten = ", ".join(f"{name} {mase:.4g}" for name, mase in verdict.beaten_by.items())
    gate = (manifest.training.model_extra or {}).get("quality_gate") if manifest.training else None
    shipped = ""
    if isinstance(gate, dict) and gate.get("allow_worse"):
        why = gate.get("reason")
        shipped = f" (shipped with --allow-worse{': ' + str(why) if why else ''})"
    return (
        f"its test MASE {verdict.model_mase:.4g} loses to {beaten}{shipped}: the best baseline "
        f"({verdict.best}) would serve this data better"
    )


def version_directories(path: Path) -> list[Path]:
    """``path`` itself when it holds a manifest, else every ``<name>/<version>`` below it."""
    if (path / MANIFEST_FILE).exists():
        return [path]
    found = sorted(p.parent for p in path.glob(f"*/{MANIFEST_FILE}"))
    found += sorted(p.parent for p in path.glob(f"*/*/{MANIFEST_FILE}"))
    return found


def validate_directory(directory: Path, *, seed: int = 0) -> Verdict:
    """Load one version directory as the service would, then check step parity."""
    try:
        runtime = load_runtime(directory, providers="cpu")
    except ModelRefused as exc:
        return Verdict(directory, False, str(exc))
    try:
        manifest = runtime.manifest
        if directory.name.isdigit() and (directory.parent.name, int(directory.name)) != (
            manifest.name,
            manifest.version,
        ):
            return Verdict(
                directory,
                False,
                f"manifest says {manifest.name!r} version {manifest.version}, the directory "
                f"says {directory.parent.name!r} version {directory.name}",
            )
        rng = np.random.default_rng(seed)
        worst = 0.0
        for batch, steps in PARITY_SHAPES:
            # Observations of unknown scale: a random walk, so a model sees moving values.
            x = np.cumsum(rng.standard_normal((batch, steps, runtime.n_features)), axis=1)
            state = runtime.initial_states(batch)
            # The model's own period from a random start, for graphs that read the time.
            start = 1.6e9 + rng.uniform(0, 3.2e8, size=(batch, 1))
            times = start + manifest.frequency * np.arange(steps)
            error = step_parity_error(runtime.run, x.astype(np.float32), state, times)
            worst = max(worst, error)
            if not error <= PARITY_TOLERANCE:
                return Verdict(
                    directory,
                    False,
                    f"step parity broken at B={batch}, T={steps}: relative error {error:.3g} "
                    f"> {PARITY_TOLERANCE:g}",
                )
        return Verdict(
            directory,
            True,
            f"{manifest.name} v{manifest.version} ({manifest.kind}, F={manifest.n_features}, "
            f"H={manifest.horizon}, Q={len(manifest.quantiles)}, S={manifest.state_size}"
            f"{', time input' if manifest.time_input else ''}): contract ok, step parity "
            f"{worst:.2g}",
            accuracy_warning(manifest),
        )
    finally:
        runtime.close()


def validate_path(path: Path) -> list[Verdict]:
    """Every version directory under ``path`` (or ``path`` itself); none found is a failure."""
    directories = version_directories(path)
    if not directories:
        return [Verdict(path, False, f"no {MANIFEST_FILE} found at or below {path}")]
    return [validate_directory(directory) for directory in directories]
