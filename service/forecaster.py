"""The core of the service: stateless forecasts and stateful streams. It knows no HTTP.

REST, WebSocket and the v2 protocol all call this one object, so observing, de-duplication
and compare-and-set live in exactly one place.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.errors import (
    Conflict,
    InvalidInput,
    PayloadTooLarge,
    StateMismatch,
    UnknownModel,
    UnknownStream,
)
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.runtime import ModelRuntime
from service.state.base import StateStore
from service.state.record import (
    NO_TIMESTAMP,
    RecordError,
    StreamRecord,
    new_incarnation,
    stream_key,
)

FloatArray = npt.NDArray[np.float32]
TimeArray = npt.NDArray[np.float64]

STREAM_ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,200}$"
_STREAM_ID = re.compile(STREAM_ID_PATTERN)
_ACTIVE_WINDOW_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Observations:
    """T observations of one series: strictly increasing epoch-second timestamps, F values each."""

    timestamps: TimeArray  # float64 [T]
    values: FloatArray  # float32 [T, F]

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])

    @classmethod
    def build(
        cls,
        timestamps: Sequence[float],
        values: Sequence[Sequence[float]],
        *,
        field: str = "observations",
    ) -> Observations:
        """Build and check finiteness, shape and order; raises InvalidInput naming the field."""
        if len(timestamps) != len(values):
            raise InvalidInput("timestamps and values differ in length", field=field)
        if len(timestamps) == 0:
            raise InvalidInput("at least one observation is required", field=field)
        widths = {len(row) for row in values}
        if len(widths) != 1:
            raise InvalidInput("every observation must have the same number of values", field=field)
        ts = np.asarray(timestamps, dtype=np.float64)
        vals = np.asarray(values, dtype=np.float64)
        bad = ~np.isfinite(vals)
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            raise InvalidInput(
                f"value {vals[row, col]!r} is not a finite number",
                field=f"{field}[{row}].values[{col}]",
            )
        if np.abs(vals).max(initial=0.0) > np.finfo(np.float32).max:
            row = int(np.argwhere(np.abs(vals) > np.finfo(np.float32).max)[0][0])
            raise InvalidInput("value overflows float32", field=f"{field}[{row}].values")
        if not np.isfinite(ts).all():
            row = int(np.argwhere(~np.isfinite(ts))[0][0])
            raise InvalidInput("timestamp is not finite", field=f"{field}[{row}].timestamp")
        steps = np.diff(ts)
        if (steps <= 0).any():
            row = int(np.argmax(steps <= 0)) + 1
            raise InvalidInput(
                "timestamps must be strictly increasing within a request",
                field=f"{field}[{row}].timestamp",
            )
        return cls(timestamps=ts, values=vals.astype(np.float32))

    def check_features(self, n_features: int, *, field: str = "observations") -> None:
        width = int(self.values.shape[1])
        if width != n_features:
            raise InvalidInput(
                f"the model takes {n_features} value(s) per observation, got {width}",
                field=f"{field}[0].values",
            )


@dataclass(frozen=True, slots=True)
class Forecast:
    """H future steps after ``origin`` (the last observation), one column per quantile."""

    model: str
    version: int
    target: str
    quantiles: tuple[float, ...]
    frequency: float
    origin: float | None
    values: FloatArray  # [H, Q]
    median_index: int

    @classmethod
    def of(cls, runtime: ModelRuntime, origin: float | None, values: FloatArray) -> Forecast:
        m = runtime.manifest
        return cls(
            model=m.name,
            version=m.version,
            target=m.target,
            quantiles=tuple(m.quantiles),
            frequency=m.frequency,
            origin=origin,
            values=values,
            median_index=m.median_index,
        )

    def step_timestamps(self) -> list[float | None]:
        if self.origin is None:
            return [None] * int(self.values.shape[0])
        return [self.origin + (k + 1) * self.frequency for k in range(int(self.values.shape[0]))]


@dataclass(frozen=True, slots=True)
class StreamView:
    """What a client sees of a stream."""

    stream_id: str
    model: str
    version: int
    seq: int
    last_timestamp: float | None
    forecast: Forecast | None


@dataclass(frozen=True, slots=True)
class ObserveResult:
    stream: StreamView
    applied: int
    skipped: tuple[float, ...]
    created: bool = False


class _KeyedLocks:
    """One FIFO lock per key, dropped when nobody holds or waits for it."""

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


class Forecaster:
    """Stateless forecasts of whole series and per-stream incremental forecasts."""

    def __init__(
        self,
        registry: ModelRegistry,
        store: StateStore,
        metrics: Metrics,
        *,
        key_prefix: str = "fcst",
        ttl_seconds: float = 7 * 24 * 3600.0,
        cas_retries: int = 16,
        max_observations: int = 10_000,
    ) -> None:
        self.registry = registry
        self.store = store
        self.metrics = metrics
        self._prefix = key_prefix
        self._ttl = ttl_seconds
        self._cas_retries = cas_retries
        self._max_observations = max_observations
        self._locks = _KeyedLocks()
        self._recent: dict[str, float] = {}
        metrics.active_streams.set_function(self._count_active)

    # -- stateless -------------------------------------------------------------------------

    async def forecast(
        self, model: str, version: int | None, series: Sequence[Observations]
    ) -> list[Forecast]:
        """Forecast after the end of each series, from the model's initial state.

        Series of equal length share one onnxruntime call.
        """
        runtime = self.registry.get(model, version)
        total = sum(len(s) for s in series)
        if total > self._max_observations:
            raise PayloadTooLarge(
                f"{total} observations exceed the limit of {self._max_observations}",
                field="series",
            )
        for i, one in enumerate(series):
            one.check_features(runtime.n_features, field=f"series[{i}].observations")
        by_length: dict[int, list[int]] = {}
        for i, one in enumerate(series):
            by_length.setdefault(len(one), []).append(i)
        results: list[Forecast | None] = [None] * len(series)
        for indices in by_length.values():
            x = np.stack([series[i].values for i in indices])
            state = np.broadcast_to(runtime.initial_state, (len(indices), runtime.state_size))
            forecast, _ = await self._run(runtime, x, np.ascontiguousarray(state))
            for row, i in enumerate(indices):
                origin = float(series[i].timestamps[-1])
                results[i] = Forecast.of(runtime, origin, forecast[row])
        return [r for r in results if r is not None]

    # -- streams ---------------------------------------------------------------------------

    async def create_stream(
        self,
        tenant: str,
        stream_id: str,
        model: str,
        version: int | None = None,
        history: Observations | None = None,
    ) -> ObserveResult:
        """Bind a stream to a model version, (re)starting it from the initial state.

        An existing stream of the same id is replaced. ``history`` warms the state up in one
        call before the stream is stored.
        """
        key = self._key(tenant, stream_id)
        runtime = self.registry.get(model, version)
        self._check_size(history)
        if history is not None:
            history.check_features(runtime.n_features, field="history")
        state: FloatArray = runtime.initial_state
        forecast: FloatArray | None = None
        seq, last_ts = 0, NO_TIMESTAMP
        if history is not None:
            out, new_state = await self._run(runtime, history.values[None], state[None])
            state, forecast = new_state[0], out[0]
            seq, last_ts = len(history), float(history.timestamps[-1])
        record = StreamRecord(
            model=runtime.name,
            version=runtime.version,
            fingerprint=runtime.fingerprint,
            incarnation=new_incarnation(),
            seq=seq,
            last_ts=last_ts,
            state=state,
            forecast=forecast,
        )
        async with self._locks.hold(key):
            existed = await self.store.get(key) is not None
            await self.store.put(key, record.encode(), self._ttl)
        self.metrics.streams_created.labels(runtime.name).inc()
        if seq:
            self.metrics.observations.labels(runtime.name).inc(seq)
        self._touch(key)
        return ObserveResult(
            stream=self._view(stream_id, record, runtime),
            applied=seq,
            skipped=(),
            created=not existed,
        )

    async def observe(self, tenant: str, stream_id: str, obs: Observations) -> ObserveResult:
        """Apply the observations newer than the stream's last timestamp, in one model call.

        Older ones are duplicates: skipped and reported, never applied twice. The write is a
        compare-and-set on the record's token; a writer that lost a race re-reads and
        re-applies, so no update is lost across replicas.
        """
        key = self._key(tenant, stream_id)
        self._check_size(obs)
        async with self._locks.hold(key):
            for _attempt in range(self._cas_retries):
                record = await self._read(key, stream_id)
                runtime = self._runtime_for(record, stream_id)
                obs.check_features(runtime.n_features)
                start = int(np.searchsorted(obs.timestamps, record.last_ts, side="right"))
                skipped = tuple(float(t) for t in obs.timestamps[:start])
                if start == len(obs):
                    self.metrics.duplicates.labels(runtime.name).inc(len(skipped))
                    return ObserveResult(self._view(stream_id, record, runtime), 0, skipped)
                fresh = obs.values[start:]
                out, new_state = await self._run(runtime, fresh[None], record.state[None])
                updated = StreamRecord(
                    model=record.model,
                    version=record.version,
                    fingerprint=record.fingerprint,
                    incarnation=record.incarnation,
                    seq=record.seq + len(fresh),
                    last_ts=float(obs.timestamps[-1]),
                    state=new_state[0],
                    forecast=out[0],
                )
                if await self.store.compare_and_set(key, record.token, updated.encode(), self._ttl):
                    self.metrics.observations.labels(runtime.name).inc(len(fresh))
                    if skipped:
                        self.metrics.duplicates.labels(runtime.name).inc(len(skipped))
                    self._touch(key)
                    return ObserveResult(
                        self._view(stream_id, updated, runtime), len(fresh), skipped
                    )
                self.metrics.cas_conflicts.inc()
        raise Conflict(
            f"stream {stream_id!r} is being written too fast from elsewhere; retry",
            field="stream_id",
        )

    async def get_stream(self, tenant: str, stream_id: str) -> StreamView:
        key = self._key(tenant, stream_id)
        record = await self._read(key, stream_id)
        try:
            runtime: ModelRuntime | None = self._runtime_for(record, stream_id)
        except StateMismatch:
            runtime = None
        return self._view(stream_id, record, runtime)

    async def delete_stream(self, tenant: str, stream_id: str) -> None:
        key = self._key(tenant, stream_id)
        async with self._locks.hold(key):
            if not await self.store.delete(key):
                raise UnknownStream(f"stream {stream_id!r} does not exist", field="stream_id")
        self._recent.pop(key, None)
        self.metrics.streams_deleted.inc()

    # -- helpers ---------------------------------------------------------------------------

    def _key(self, tenant: str, stream_id: str) -> str:
        if not _STREAM_ID.match(stream_id):
            raise InvalidInput(
                "stream ids are 1-200 characters of letters, digits and _ . : @ -",
                field="stream_id",
            )
        return stream_key(self._prefix, tenant, stream_id)

    def _check_size(self, obs: Observations | None) -> None:
        if obs is not None and len(obs) > self._max_observations:
            raise PayloadTooLarge(
                f"{len(obs)} observations exceed the limit of {self._max_observations}",
                field="observations",
            )

    async def _read(self, key: str, stream_id: str) -> StreamRecord:
        raw = await self.store.get(key)
        if raw is None:
            raise UnknownStream(
                f"stream {stream_id!r} does not exist (never created, deleted or expired); "
                "create it with PUT",
                field="stream_id",
            )
        try:
            return StreamRecord.decode(raw)
        except RecordError as exc:
            raise StateMismatch(
                f"stream {stream_id!r} holds a record this service cannot read ({exc}); "
                "re-create it with PUT",
                field="stream_id",
            ) from exc

    def _runtime_for(self, record: StreamRecord, stream_id: str) -> ModelRuntime:
        """The runtime that made this state; never another one."""
        try:
            runtime = self.registry.get(record.model, record.version)
        except UnknownModel as exc:
            raise StateMismatch(
                f"stream {stream_id!r} was built by model {record.model!r} version "
                f"{record.version}, which is no longer served; re-warm it with PUT and a history",
                field="stream_id",
            ) from exc
        if runtime.fingerprint != record.fingerprint:
            raise StateMismatch(
                f"stream {stream_id!r} was built by other weights of {record.model!r} version "
                f"{record.version} (fingerprint {record.fingerprint[:12]}, serving "
                f"{runtime.fingerprint[:12]}); re-warm it with PUT and a history",
                field="stream_id",
            )
        return runtime

    def _view(
        self, stream_id: str, record: StreamRecord, runtime: ModelRuntime | None
    ) -> StreamView:
        last = None if math.isinf(record.last_ts) else record.last_ts
        forecast = None
        if runtime is not None and record.forecast is not None:
            forecast = Forecast.of(runtime, last, record.forecast)
        return StreamView(
            stream_id=stream_id,
            model=record.model,
            version=record.version,
            seq=record.seq,
            last_timestamp=last,
            forecast=forecast,
        )

    async def _run(
        self, runtime: ModelRuntime, x: FloatArray, state: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        labels = (runtime.name, str(runtime.version))
        start = time.perf_counter()
        forecast, state_out = await runtime.run_async(x, state)
        self.metrics.inference_latency.labels(*labels).observe(time.perf_counter() - start)
        self.metrics.inference_rows.labels(*labels).observe(x.shape[0])
        self.metrics.inference_steps.labels(*labels).observe(x.shape[1])
        return forecast, state_out

    def _touch(self, key: str) -> None:
        self._recent[key] = time.monotonic()

    def _count_active(self) -> float:
        horizon = time.monotonic() - _ACTIVE_WINDOW_SECONDS
        stale = [k for k, t in self._recent.items() if t < horizon]
        for k in stale:
            del self._recent[k]
        return float(len(self._recent))
