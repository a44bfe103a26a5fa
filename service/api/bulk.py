"""Observations for many streams at once: shared by ``POST /v1/observations`` and the WebSocket.

Each stream succeeds or fails on its own; one bad stream never fails the others.
"""

from __future__ import annotations

from service.api.errors import problem_body
from service.api.schemas import (
    Detail,
    ProblemOut,
    StreamAnswer,
    StreamObservationsIn,
    observe_out,
    summary_out,
    to_observations,
)
from service.errors import ForecastError, PayloadTooLarge
from service.forecaster import Forecaster, Observations


def error_answer(
    exc: ForecastError, stream_id: str = "", request_id: str | int | None = None
) -> StreamAnswer:
    body = problem_body(exc)
    return StreamAnswer(
        id=request_id, stream_id=stream_id, status=body["status"], error=ProblemOut(**body)
    )


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
    for i, item in enumerate(items):
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
