"""The anomaly flag of a v2 sequence step, as response parameters (kept apart from the v2
protocol module so that it stays one small hook there).

A step applies one reading; its answer's top-level ``parameters`` say how that reading
compared with the forecast issued for its time: ``scored`` (false: none was issued),
``quantile_position`` and ``anomaly``. A sequence-start step applies a history and is not
scored (no forecast was issued before it).
"""

from __future__ import annotations

from typing import Any

from service.forecaster import ObserveResult


def step_parameters(result: ObserveResult) -> dict[str, Any]:
    """The response parameters of one sequence step's answer."""
    if not result.scores:
        return {"scored": False, "anomaly": False}
    last = result.scores[-1]
    out: dict[str, Any] = {
        "scored": last.step is not None,
        "anomaly": any(s.anomaly for s in result.scores),
    }
    if last.position is not None:
        out["quantile_position"] = last.position
    return out
