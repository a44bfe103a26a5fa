"""Inference through the core: stateless forecasts and Triton's sequence steps.

Both transports call :func:`infer` with a checked request; it returns the answer's tensors.
Steps of one sequence are ordered by one :class:`SequenceLocks` per process, shared by HTTP
and gRPC, so a client may mix them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, cast

import numpy as np

from service.api.kserve.wire import InferAnswer, InferRequest, OutputTensor, SequenceControl, bad
from service.api.v2_scores import step_parameters
from service.core.observations import synthetic_times
from service.errors import Conflict, UnknownStream, WrongModel
from service.forecaster import FloatArray, Forecaster, Observations, ObserveResult
from service.ids import SEQUENCE_PREFIX, STRING_SEQUENCE_PREFIX, shown
from service.manifest import OUTPUT_FORECAST
from service.runtime import ModelRuntime
from service.settings import Settings

#: Stream ids of v2 sequences: ``v2:<uint>`` and ``v2:s:<string>`` (``service.ids``).
STREAM_PREFIX: Final = SEQUENCE_PREFIX


@dataclass(frozen=True, slots=True)
class V2Options:
    """The settings the v2 routes report or enforce."""

    max_batch_size: int
    idle_microseconds: int
    max_body_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> V2Options:
        return cls(
            max_batch_size=settings.max_series,
            idle_microseconds=int(settings.stream_ttl_seconds * 1_000_000),
            max_body_bytes=settings.max_body_bytes,
        )


class SequenceLocks:
    """One FIFO lock per sequence, dropped when nobody holds or waits for it.

    The core applies a stream's observations in the order they are handed to it, but a step
    may also (re)create the stream (``sequence_start``) or forget it (``sequence_end``);
    holding this lock across the whole step keeps a sequence's steps, starts and ends in the
    order they arrived.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


@dataclass(frozen=True, slots=True)
class V2:
    """What both transports share within one app: the options and the sequence locks."""

    options: V2Options
    locks: SequenceLocks

    @classmethod
    def of(cls, settings: Settings) -> V2:
        return cls(V2Options.of(settings), SequenceLocks())


async def infer(
    v2: V2,
    forecaster: Forecaster,
    tenant: str,
    runtime: ModelRuntime,
    version: int | None,
    parsed: InferRequest,
) -> InferAnswer:
    """A stateless forecast, or one sequence step, as the answer's tensors.

    The caller must not await between checking the request and calling this: a sequence's
    lock is taken here, and steps queue in the order they reach it.
    """
    parameters: dict[str, Any] = {}
    if parsed.sequence is None:
        values = await _stateless(forecaster, runtime, parsed)
        model, served = runtime.name, runtime.version
    else:
        async with v2.locks.hold(f"{tenant}/{parsed.sequence.stream_id}"):
            result = await _step(forecaster, tenant, runtime, version, parsed, parsed.sequence)
        forecast = result.stream.forecast
        if forecast is None:
            raise Conflict("the sequence has no forecast yet", field="sequence_id")
        values = forecast.values[None]
        model, served = result.stream.model, result.stream.version
        parameters = step_parameters(result)
    made = [OutputTensor(OUTPUT_FORECAST, "FP32", np.asarray(values, dtype=np.float32))]
    outputs = [tensor for tensor in made if tensor.name in parsed.outputs]
    return InferAnswer(
        model=model,
        version=served,
        request_id=parsed.request_id,
        outputs=outputs,
        parameters=parameters,
    )


def _series(parsed: InferRequest, runtime: ModelRuntime, row: int) -> Observations:
    steps = int(parsed.x.shape[1])
    if parsed.timestamps is not None:
        times = parsed.timestamps[row]
    else:
        times = synthetic_times(None, steps, runtime.manifest.frequency)
    return Observations.build(
        cast(Sequence[float], times),
        cast(Sequence[Sequence[float]], parsed.x[row]),
        field=f"x[{row}]",
    )


async def _stateless(
    forecaster: Forecaster, runtime: ModelRuntime, parsed: InferRequest
) -> FloatArray:
    series = [_series(parsed, runtime, row) for row in range(int(parsed.x.shape[0]))]
    forecasts = await forecaster.forecast(runtime.name, runtime.version, series)
    return np.stack([f.values for f in forecasts])


async def _step(
    forecaster: Forecaster,
    tenant: str,
    runtime: ModelRuntime,
    version: int | None,
    parsed: InferRequest,
    sequence: SequenceControl,
) -> ObserveResult:
    """Apply one sequence step through the core; the caller holds the sequence's lock."""
    stream_id = sequence.stream_id
    if sequence.start:
        result = await forecaster.create_stream(
            tenant, stream_id, runtime.name, runtime.version, _series(parsed, runtime, 0)
        )
    else:
        if parsed.timestamps is not None:
            obs = _series(parsed, runtime, 0)
        else:
            obs = Observations.untimed(parsed.x[0], field="x[0]")
        try:
            result = await forecaster.observe(
                tenant, stream_id, obs, require=(runtime.name, version)
            )
        except UnknownStream:
            raise UnknownStream(
                f"sequence {_shown(stream_id)} is not active (never started, ended, or idle "
                "past max_sequence_idle_microseconds); start it with sequence_start",
                field="sequence_id",
            ) from None
        except WrongModel as exc:
            raise bad(
                f"sequence {_shown(stream_id)} runs model {exc.model!r} "
                f"version {exc.version}; send its steps to that model"
            ) from None
    if sequence.end:
        # Expired or ended elsewhere in the meantime: forgotten either way.
        with contextlib.suppress(UnknownStream):
            await forecaster.delete_stream(tenant, stream_id)
    return result


def _shown(stream_id: str) -> str:
    """The sequence id as the client sent it (a string one quoted, escaped and cut short)."""
    if stream_id.startswith(STRING_SEQUENCE_PREFIX):
        return shown(stream_id.removeprefix(STRING_SEQUENCE_PREFIX))
    return stream_id.removeprefix(SEQUENCE_PREFIX)


__all__ = ["STREAM_PREFIX", "V2", "SequenceLocks", "V2Options", "infer"]
