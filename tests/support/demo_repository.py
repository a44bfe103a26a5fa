"""The small model repository most tests serve: untrained ``demo-lstm`` and ``demo-gru``."""

from __future__ import annotations

from pathlib import Path


def build_demo_repository(root: Path) -> Path:
    """Build ``demo-lstm`` and ``demo-gru`` (version 1) under ``root`` and return ``root``.

    Two features ``["load", "temp"]``, target ``load``, hourly; hand-built ONNX graphs, so no
    torch is needed and a build takes tens of milliseconds.
    """
    from models.onnx_builder import build_recurrent_model

    for kind in ("lstm", "gru"):
        build_recurrent_model(
            root / f"demo-{kind}" / "1",
            kind=kind,
            name=f"demo-{kind}",
            features=["load", "temp"],
            target="load",
            frequency=3600.0,
        )
    return root
