"""The core's front door: stateless forecasts and stateful streams. It knows no HTTP.

REST, WebSocket and the v2 protocol all call this one object. Observations of every kind go
to the one observe engine (``service.core.engine``); creating, reading and deleting a stream
are single store calls made here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Literal

import numpy as np

from service.bus import Announcer, ForecastBus, LocalBus
from service.core.answers import (
    Answers,
    Forecast,
    Model,
    ObserveResult,
    StreamView,
    view_of,
)
from service.core.cache import RecordCache
from service.core.calls import ModelCalls
from service.core.engine import Engine, Policies
from service.core.gaps import GapPolicy, missing_before
from service.core.observations import FloatArray, Observations, Readings, TimeArray
from service.core.records import runtime_for, unknown, unreadable
from service.core.scoring import last_anomaly
from service.errors import ForecastError, PayloadTooLarge, StateMismatch, UnknownStream
from service.ids import check_stream_id
from service.metrics import Metrics
from service.quota import StreamQuota
from service.registry import ModelRegistry
from service.runtime import ModelRuntime
from service.state.base import StateStore
from service.state.keys import stream_channel, stream_key
from service.state.record import (
    NO_TIMESTAMP,
    RecordError,
    StreamRecord,
    new_incarnation,
    read_header,
)

_ACTIVE_WINDOW_SECONDS = 300.0

ModelChangePolicy = Literal["reject", "replay"]

__all__ = [
    "FloatArray",
    "Forecast",
    "Forecaster",
    "GapPolicy",
    "Observations",
    "ObserveResult",
    "Readings",
    "StreamView",
    "TimeArray",
]


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
        batch_max_rows: int = 1024,
        batch_max_delay: float = 0.0,
        bus: ForecastBus | None = None,
        encode: Callable[[ObserveResult], bytes] | None = None,
        history_length: int = 48,
        gap_policy: GapPolicy = "accept",
        max_gap_steps: int = 48,
        on_model_change: ModelChangePolicy = "reject",
        max_streams_per_tenant: int = 100_000,
        record_cache: int = 65_536,
        scoring: bool = True,
        anomaly_margin: float = 0.5,
    ) -> None:
        self.registry = registry
        self.store = store
        self.metrics = metrics
        self._prefix = key_prefix
        self._ttl = ttl_seconds
        self._max_observations = max_observations
        self._recent: dict[str, float] = {}
        #: The one way out for updates: the bus's subscribers and this process's listeners.
        self.announcer = Announcer(
            bus if bus is not None else LocalBus(), key_prefix=key_prefix, encode=encode
        )
        self._history = history_length
        self._calls = ModelCalls(metrics)
        self._quota = StreamQuota(
            store,
            metrics,
            key_prefix=key_prefix,
            limit=max_streams_per_tenant,
            ttl_seconds=ttl_seconds,
        )
        self.engine = Engine(
            registry,
            store,
            metrics,
            self._calls,
            RecordCache(record_cache),
            Policies(
                gap_policy,
                max_gap_steps,
                on_model_change,
                history_length,
                scoring=scoring,
                anomaly_margin=anomaly_margin,
            ),
            ttl_seconds=ttl_seconds,
            cas_retries=cas_retries,
            batch_max_rows=batch_max_rows,
            batch_max_delay=batch_max_delay,
            announce=self.announcer.announce,
            touch=self._touch,
        )
        metrics.active_streams.set_function(self._count_active)

    @property
    def key_prefix(self) -> str:
        """The namespace of every key this forecaster writes (``Settings.key_prefix``)."""
        return self._prefix

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
        made = Model.of(runtime)
        results: list[Forecast | None] = [None] * len(series)
        for indices in by_length.values():
            x = np.stack([series[i].values for i in indices])
            times = np.stack([series[i].timestamps for i in indices])
            state = np.broadcast_to(runtime.initial_state, (len(indices), runtime.state_size))
            forecast, _ = await self._calls.run(runtime, x, np.ascontiguousarray(state), times)
            for row, i in enumerate(indices):
                results[i] = made.forecast(float(series[i].timestamps[-1]), forecast[row])
        return [r for r in results if r is not None]

    # -- streams ---------------------------------------------------------------------------

    async def create_stream(
        self,
        tenant: str,
        stream_id: str,
        model: str,
        version: int | None = None,
        history: Observations | None = None,
        *,
        replace: bool = True,
    ) -> ObserveResult:
        """Bind a stream to a model version, (re)starting it from the initial state.

        An existing stream of the same id is replaced; with ``replace=False`` it is kept as
        it is (``created`` False: a racing creator on another replica got there first).
        ``history`` warms the state up in one call before the stream is stored. A new stream
        must fit in the tenant's stream limit (``StreamLimitExceeded`` otherwise, nothing
        stored); a replaced one already does.
        """
        key = self._key(tenant, stream_id)
        runtime = self.registry.get(model, version)
        self._check_size(history)
        if history is not None:
            history.check_features(runtime.n_features, field="history")
        state: FloatArray = runtime.initial_state
        forecast: FloatArray | None = None
        seq, last_ts, missing = 0, NO_TIMESTAMP, 0
        kept_ts: TimeArray | None = None
        kept_values: FloatArray | None = None
        last_target = float("nan")
        if history is not None:
            target = runtime.manifest.features.index(runtime.manifest.target)
            last_target = float(history.values[-1, target])
            forecast, state = await self._calls.feed(
                runtime, history.values, history.timestamps, state
            )
            seq, last_ts = len(history), float(history.timestamps[-1])
            previous = np.concatenate(([-np.inf], history.timestamps[:-1]))
            missing = int(
                missing_before(history.timestamps, previous, runtime.manifest.frequency).sum()
            )
            if self._history > 0:
                kept_ts = history.timestamps[-self._history :]
                kept_values = history.values[-self._history :]
        record = StreamRecord(
            model=runtime.name,
            version=runtime.version,
            fingerprint=runtime.fingerprint,
            incarnation=new_incarnation(),
            seq=seq,
            last_ts=last_ts,
            state=state,
            forecast=forecast,
            history_ts=kept_ts,
            history_values=kept_values,
            last_target=last_target,
        )
        value = record.encode()
        # Counted before it is written, so no replica ever sees more streams than the limit.
        await self._quota.admit(tenant, stream_id)
        if replace:
            existed = await self.store.get(key) is not None
            await self.store.put(key, value, self._ttl)
        else:
            existed = not await self.store.compare_and_set(key, None, value, self._ttl)
            if existed:
                return ObserveResult(await self.get_stream(tenant, stream_id), 0, ())
        self.engine.cache.put_many([(key, value)])
        self.metrics.streams_created.labels(runtime.name).inc()
        if seq:
            self.metrics.observations.labels(runtime.name).inc(seq)
        self._touch([key])
        view = view_of(
            Model.of(runtime), stream_id, runtime.name, runtime.version, seq, last_ts, forecast
        )
        return ObserveResult(view, seq, (), created=not existed, missing=missing)

    async def observe(
        self,
        tenant: str,
        stream_id: str,
        obs: Observations,
        *,
        require: tuple[str, int | None] | None = None,
    ) -> ObserveResult:
        """Apply the observations newer than the stream's last timestamp.

        Older ones are duplicates: skipped and reported, never applied twice. Observations
        waiting at the same moment, for any streams, are applied together (see
        ``service.core.engine``). With ``require`` (model name, version or None) a stream
        running another model is refused (``WrongModel``).
        """
        answers = await self.observe_readings(
            tenant, Readings.of([(stream_id, obs)]), require=require
        )
        result = answers.result(0)
        if isinstance(result, ForecastError):
            raise result
        return result

    async def observe_many(
        self, tenant: str, items: Sequence[tuple[str, Observations]]
    ) -> list[ObserveResult | ForecastError]:
        """``observe`` for many streams at once; each stream succeeds or fails on its own."""
        by_shape: dict[tuple[int, bool], list[int]] = {}
        for i, (_, obs) in enumerate(items):
            by_shape.setdefault((int(obs.values.shape[1]), obs.timed), []).append(i)
        out: list[ObserveResult | ForecastError | None] = [None] * len(items)
        shapes = list(by_shape.values())
        batches = [Readings.of([items[i] for i in chosen]) for chosen in shapes]
        answered = await asyncio.gather(*(self.observe_readings(tenant, r) for r in batches))
        for chosen, answers in zip(shapes, answered, strict=True):
            for j, i in enumerate(chosen):
                out[i] = answers.result(j)
        return [r for r in out if r is not None]

    async def observe_readings(
        self, tenant: str, readings: Readings, *, require: tuple[str, int | None] | None = None
    ) -> Answers:
        """Apply many streams' readings given as columns; each item is answered on its own.

        ``require`` names the model (and version) every stream must be running.
        """
        if require is not None:
            readings.require = require
        answers = Answers(len(readings))
        keys: list[str] = []
        todo: list[int] = []
        counts = np.diff(readings.bounds)
        limit = self._max_observations
        too_many = set(np.flatnonzero(counts > limit).tolist())
        for i, stream_id in enumerate(readings.stream_ids):
            try:
                keys.append(self._key(tenant, stream_id))
            except ForecastError as exc:
                keys.append("")
                answers.fail(i, exc)
                continue
            if i in too_many:
                answers.fail(
                    i,
                    PayloadTooLarge(
                        f"{counts[i]} observations exceed the limit of {limit}",
                        field="observations",
                    ),
                )
                continue
            todo.append(i)
        readings.keys = keys
        return await self.engine.apply(readings, answers, todo)

    async def aclose(self) -> None:
        """Stop the batch worker; observations still queued fail instead of hanging."""
        await self.engine.aclose()

    def subscribe(
        self, tenant: str, stream_id: str
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Encoded updates of one stream, from whichever replica makes them."""
        return self.announcer.bus.subscribe(
            stream_channel(self._prefix, self._key(tenant, stream_id))
        )

    async def get_stream(self, tenant: str, stream_id: str) -> StreamView:
        key = self._key(tenant, stream_id)
        raw = await self.store.get(key)
        if raw is None:
            raise unknown(stream_id)
        try:
            record = StreamRecord.decode(raw)
            kind = read_header(raw)
        except RecordError as exc:
            raise unreadable(exc)(stream_id) from exc
        self.engine.cache.put_many([(key, raw)])
        try:
            runtime: ModelRuntime | None = runtime_for(self.registry, kind, stream_id)
        except StateMismatch:
            runtime = None
        return view_of(
            None if runtime is None else Model.of(runtime),
            stream_id,
            record.model,
            record.version,
            record.seq,
            record.last_ts,
            record.forecast,
            last_anomaly(record),
        )

    async def delete_stream(self, tenant: str, stream_id: str) -> None:
        key = self._key(tenant, stream_id)
        seen = await self._quota.seen(tenant, stream_id)
        self.engine.cache.drop(key)
        existed = await self.store.delete(key)
        # Even when the stream was gone already: a retry after an outage uncounts it then.
        await self._quota.release(tenant, stream_id, seen)
        if not existed:
            raise UnknownStream(f"stream {stream_id!r} does not exist", field="stream_id")
        self._recent.pop(key, None)
        self.metrics.streams_deleted.inc()

    # -- helpers ---------------------------------------------------------------------------

    def _key(self, tenant: str, stream_id: str) -> str:
        return stream_key(self._prefix, tenant, check_stream_id(stream_id))

    def _check_size(self, obs: Observations | None) -> None:
        if obs is not None and len(obs) > self._max_observations:
            raise PayloadTooLarge(
                f"{len(obs)} observations exceed the limit of {self._max_observations}",
                field="observations",
            )

    def _touch(self, keys: Sequence[str]) -> None:
        now = time.monotonic()
        recent = self._recent
        for key in keys:
            recent[key] = now

    def _count_active(self) -> float:
        horizon = time.monotonic() - _ACTIVE_WINDOW_SECONDS
        stale = [k for k, t in self._recent.items() if t < horizon]
        for k in stale:
            del self._recent[k]
        return float(len(self._recent))
