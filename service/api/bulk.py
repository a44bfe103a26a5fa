"""Observations for many streams at once: shared by ``POST /v1/observations`` and the WebSocket.

Each stream succeeds or fails on its own; one bad stream never fails the others. The
readings go to the core as columns (one ``Readings`` per width), and summary answers are
read off the core's answer columns, so a stream costs no per-stream objects but its answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from service.api.decoders import BulkBody
from service.api.errors import problem_body
from service.api.schemas import (
    ProblemOut,
    StreamAnswer,
    SummaryOut,
    from_epoch,
    observe_out,
)
from service.core.answers import AnswerChunk, Answers
from service.core.observations import Observations, Readings
from service.errors import ForecastError, PayloadTooLarge
from service.forecaster import Forecaster


def error_answer(
    exc: ForecastError, stream_id: str = "", request_id: str | int | None = None
) -> StreamAnswer:
    body = problem_body(exc)
    return StreamAnswer(
        id=request_id, stream_id=stream_id, status=body["status"], error=ProblemOut(**body)
    )


async def observe_streams(
    forecaster: Forecaster, tenant: str, body: BulkBody, max_observations: int
) -> list[StreamAnswer]:
    if body.rows > max_observations:
        raise PayloadTooLarge(
            f"{body.rows} observations exceed the limit of {max_observations}", field="streams"
        )
    ids, stream_ids = body.ids, body.stream_ids
    out: list[StreamAnswer | None] = [None] * len(ids)
    for k, exc in body.errors.items():
        out[k] = error_answer(exc, stream_ids[k], ids[k])
    batches = _batches(body)
    results = await asyncio.gather(
        *(forecaster.observe_readings(tenant, readings) for _, readings in batches)
    )
    columns: dict[int, _Columns] = {}
    for (chosen, _), answers in zip(batches, results, strict=True):
        for j, k in enumerate(chosen):
            out[k] = _answer(answers, j, stream_ids[k], ids[k], body.detail == "full", columns)
    return [a for a in out if a is not None]


def _batches(body: BulkBody) -> list[tuple[list[int], Readings]]:
    """The request's readings as one ``Readings`` per width, each in the request's order (a
    stream's later item must apply after its earlier one)."""
    stream_ids = body.stream_ids
    many: dict[int, list[int]] = {}
    for k, obs in body.many.items():
        many.setdefault(int(obs.values.shape[1]), []).append(k)
    out: list[tuple[list[int], Readings]] = []
    for width in dict.fromkeys([*body.single, *many]):
        chosen, ts, values = body.single.get(width, ([], np.empty(0), np.empty((0, width))))
        if width not in many:
            if chosen:
                ids = [stream_ids[k] for k in chosen]
                out.append((chosen, Readings.single_rows(ids, ts, values)))
            continue
        items = {k: body.many[k] for k in many[width]}
        items.update(
            {k: Observations(ts[j : j + 1], values[j : j + 1]) for j, k in enumerate(chosen)}
        )
        order = sorted(items)
        out.append((order, Readings.of([(stream_ids[k], items[k]) for k in order])))
    return out


def _answer(
    answers: Answers,
    j: int,
    stream_id: str,
    request_id: str | int | None,
    full: bool,
    columns: dict[int, _Columns],
) -> StreamAnswer:
    error = answers.error(j)
    if error is not None:
        return error_answer(error, stream_id, request_id)
    if full:
        result = answers.result(j)
        assert not isinstance(result, ForecastError)
        return StreamAnswer(
            id=request_id, stream_id=stream_id, status=200, result=observe_out(result)
        )
    where = answers.located(j)
    assert where is not None
    chunk, row = where
    return StreamAnswer(
        id=request_id, stream_id=stream_id, status=200, summary=_summary(chunk, row, columns)
    )


def _summary(chunk: AnswerChunk, row: int, columns: dict[int, _Columns]) -> SummaryOut:
    """``summary_out`` of a chunk's row; each chunk's columns listed once for all its rows."""
    listed = columns.get(id(chunk))
    if listed is None:
        listed = columns[id(chunk)] = _Columns.of(chunk)
    last = listed.last_ts[row]
    return SummaryOut(
        seq=listed.seq[row],
        applied=listed.applied[row],
        skipped=len(chunk.skipped.get(row, ())),
        last_timestamp=from_epoch(None if last == _NO_TIME else last),
        median=listed.median[row] if listed.has_forecast[row] else None,
        missing=listed.missing[row],
        positions=listed.positions[listed.bounds[row] : listed.bounds[row + 1]],
        anomaly=listed.anomaly[listed.bounds[row] : listed.bounds[row + 1]],
    )


_NO_TIME = float("-inf")


@dataclass(frozen=True, slots=True)
class _Columns:
    """A chunk's answer columns as Python lists (one conversion for all its rows)."""

    seq: list[int]
    applied: list[int]
    missing: list[int]
    last_ts: list[float]
    median: list[list[float]]
    has_forecast: list[bool]
    #: Every row's readings' positions and flags, row ``r``'s at ``bounds[r]:bounds[r + 1]``.
    bounds: list[int]
    positions: list[float | None]
    anomaly: list[bool]

    @classmethod
    def of(cls, chunk: AnswerChunk) -> _Columns:
        scores = chunk.scores
        if scores is None:
            bounds, positions, anomaly = [0] * (len(chunk.seq) + 1), [], []
        else:
            bounds = scores.bounds.tolist()
            positions = [
                p if ok else None
                for p, ok in zip(scores.position.tolist(), scores.scored.tolist(), strict=True)
            ]
            anomaly = scores.anomaly.tolist()
        return cls(
            chunk.seq.tolist(),
            chunk.applied.tolist(),
            chunk.missing.tolist(),
            chunk.last_ts.tolist(),
            chunk.forecast[:, :, chunk.model.median_index].tolist(),
            chunk.has_forecast.tolist(),
            bounds,
            positions,
            anomaly,
        )
