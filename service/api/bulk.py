"""Observations for many streams at once: shared by ``POST /v1/observations`` and the WebSocket.

Each stream succeeds or fails on its own; one bad stream never fails the others.
"""

from __future__ import annotations

import numpy as np

from service.api.errors import problem_body
from service.api.schemas import (
    Detail,
    ProblemOut,
    StreamAnswer,
    StreamObservationsIn,
    epoch,
    observe_out,
    summary_out,
    to_observations,
)
from service.errors import ForecastError, PayloadTooLarge
from service.forecaster import Forecaster, Observations
from service.timerange import outside

_F32_MAX = float(np.finfo(np.float32).max)


def error_answer(
    exc: ForecastError, stream_id: str = "", request_id: str | int | None = None
) -> StreamAnswer:
    body = problem_body(exc)
    return StreamAnswer(
        id=request_id, stream_id=stream_id, status=body["status"], error=ProblemOut(**body)
    )


def _single_readings(items: list[StreamObservationsIn]) -> dict[int, Observations]:
    """Observations of the items that carry one reading, built as one array per width.

    The usual ingest message has one reading per stream: checking and converting them
    together costs a fraction of one ``Observations.build`` each. An item whose reading is
    not finite, overflows float32 or is out of the time range is left out, so
    ``Observations.build`` reports it.
    """
    by_width: dict[int, tuple[list[int], list[float], list[list[float]]]] = {}
    for i, item in enumerate(items):
        if len(item.observations) != 1:
            continue
        (one,) = item.observations
        row = one.row()
        index, times, rows = by_width.setdefault(len(row), ([], [], []))
        index.append(i)
        times.append(epoch(one.timestamp))
        rows.append(row)
    out: dict[int, Observations] = {}
    for width, (index, times, rows) in by_width.items():
        ts = np.array(times, dtype=np.float64)
        wide = np.array(rows, dtype=np.float64).reshape(len(rows), width)
        good = ~outside(ts) & (np.isfinite(wide) & (np.abs(wide) <= _F32_MAX)).all(axis=1)
        values = wide.astype(np.float32)
        for k in np.flatnonzero(good).tolist():
            out[index[k]] = Observations(ts[k : k + 1], values[k : k + 1])
    return out


async def observe_streams(
    forecaster: Forecaster,
    tenant: str,
    items: list[StreamObservationsIn],
    max_observations: int,
    detail: Detail = "full",
) -> list[StreamAnswer]:
    total = sum(len(item.observations) for item in items)
    if total > max_observations:
        raise PayloadTooLarge(
            f"{total} observations exceed the limit of {max_observations}", field="streams"
        )
    answers: list[StreamAnswer | None] = [None] * len(items)
    work: list[tuple[int, str, Observations]] = []
    singles = _single_readings(items)
    for i, item in enumerate(items):
        obs = singles.get(i)
        if obs is None:
            try:
                obs = to_observations(item.observations, f"streams[{i}].observations")
            except ForecastError as exc:
                answers[i] = error_answer(exc, item.stream_id, item.id)
                continue
        work.append((i, item.stream_id, obs))
    outcomes = await forecaster.observe_many(tenant, [(sid, obs) for _, sid, obs in work])
    for (i, _, _), outcome in zip(work, outcomes, strict=True):
        item = items[i]
        if isinstance(outcome, ForecastError):
            answers[i] = error_answer(outcome, item.stream_id, item.id)
        else:
            answers[i] = (
                StreamAnswer(
                    id=item.id, stream_id=item.stream_id, status=200, result=observe_out(outcome)
                )
                if detail == "full"
                else StreamAnswer(
                    id=item.id, stream_id=item.stream_id, status=200, summary=summary_out(outcome)
                )
            )
    return [a for a in answers if a is not None]
