"""The core of the service: stateless forecasts and stateful streams. It knows no HTTP.

REST, WebSocket and the v2 protocol all call this one object, so observing, de-duplication
and compare-and-set live in exactly one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NoReturn

import numpy as np
import numpy.typing as npt

from service.batching import MicroBatcher, Pending, fresh_start, group_rows, rounds
from service.bus import ForecastBus, LocalBus
from service.errors import (
    Conflict,
    ForecastError,
    InvalidInput,
    PayloadTooLarge,
    StateMismatch,
    StoreUnavailable,
    UnknownModel,
    UnknownStream,
)
from service.ids import check_stream_id
from service.metrics import Metrics
from service.quota import StreamQuota
from service.registry import ModelRegistry
from service.runtime import ModelRuntime
from service.state.base import StateStore
from service.state.keys import stream_channel, stream_key
from service.state.record import (
    FLAG_FORECAST,
    NO_TIMESTAMP,
    Layout,
    RecordError,
    StreamRecord,
    decode_block,
    encode_block,
    layout_key,
    new_incarnation,
    new_nonces,
    token_of,
)
from service.timerange import in_range, out_of_range, outside

FloatArray = npt.NDArray[np.float32]
TimeArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_ACTIVE_WINDOW_SECONDS = 300.0
#: Model calls of at most this many rows x steps run on the event loop (tens of
#: microseconds); larger ones go to a thread, where onnxruntime releases the GIL.
_INLINE_STEPS = 8


GapPolicy = Literal["accept", "reject", "forward", "median"]
ModelChangePolicy = Literal["reject", "replay"]

#: Inputs up to this many values are checked in plain Python (cheaper than numpy's calls).
_SMALL = 64
_F32_MAX = float(np.finfo(np.float32).max)


def _bad_value(value: float, field: str) -> NoReturn:
    if math.isfinite(value):
        raise InvalidInput(f"value {value:g} overflows float32", field=field)
    raise InvalidInput(f"value {value} is not a finite number", field=field)


def _bad_timestamp(row: int, field: str) -> NoReturn:
    raise InvalidInput("timestamp is not finite", field=f"{field}[{row}].timestamp")


def _unordered(row: int, field: str) -> NoReturn:
    raise InvalidInput(
        "timestamps must be strictly increasing within a request",
        field=f"{field}[{row}].timestamp",
    )


def _check_small(
    timestamps: Sequence[float], values: Sequence[Sequence[float]], field: str
) -> None:
    previous = -math.inf
    for row, (ts, vals) in enumerate(zip(timestamps, values, strict=True)):
        for col, value in enumerate(vals):
            if not (math.isfinite(value) and abs(value) <= _F32_MAX):
                _bad_value(value, f"{field}[{row}].values[{col}]")
        if not math.isfinite(ts):
            _bad_timestamp(row, field)
        if not in_range(ts):
            raise out_of_range(ts, f"{field}[{row}].timestamp")
        if ts <= previous:
            _unordered(row, field)
        previous = ts


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
        width = len(values[0])
        if any(len(row) != width for row in values):
            raise InvalidInput("every observation must have the same number of values", field=field)
        if len(timestamps) * width <= _SMALL:
            _check_small(timestamps, values, field)
            return cls(
                timestamps=np.array(timestamps, dtype=np.float64),
                values=np.array(values, dtype=np.float32).reshape(len(values), width),
            )
        ts = np.asarray(timestamps, dtype=np.float64)
        vals = np.asarray(values, dtype=np.float64)
        bad = ~np.isfinite(vals) | (np.abs(vals) > _F32_MAX)
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            _bad_value(float(vals[row, col]), f"{field}[{row}].values[{col}]")
        bad_ts = ~np.isfinite(ts)
        if bad_ts.any():
            _bad_timestamp(int(np.argmax(bad_ts)), field)
        far = outside(ts)
        if far.any():
            row = int(np.argmax(far))
            raise out_of_range(float(ts[row]), f"{field}[{row}].timestamp")
        steps = np.diff(ts)
        if (steps <= 0).any():
            _unordered(int(np.argmax(steps <= 0)) + 1, field)
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
    #: Rows inserted for missing readings among this request's own (gap_policy forward or
    #: median); counted in the stream's ``seq``, not in ``applied``.
    filled: int = 0


@dataclass(frozen=True, slots=True)
class _ObserveItem:
    key: str
    stream_id: str
    obs: Observations


@dataclass(frozen=True, slots=True)
class _Gapped:
    """A request's fresh rows with readings missing among them, to fill from the median."""

    index: int  # into the batch's live items
    ts: TimeArray
    values: FloatArray
    missing: IntArray  # readings missing right before each row
    offset: int  # of the first fresh row in the request, for error fields


class _Work:
    """One stream's state while a batch is applied to it: read once, written once."""

    __slots__ = (
        "forecast",
        "hist_ts",
        "hist_values",
        "key",
        "last_ts",
        "rebuilt",
        "record",
        "runtime",
        "seq",
        "state",
    )

    def __init__(self, key: str, record: StreamRecord, runtime: ModelRuntime) -> None:
        self.key = key
        self.record = record
        self.runtime = runtime
        self.state: FloatArray = record.state
        self.forecast: FloatArray | None = record.forecast
        self.seq = record.seq
        self.last_ts = record.last_ts
        self.hist_ts: TimeArray | None = record.history_ts
        self.hist_values: FloatArray | None = record.history_values
        #: Set when the state was rebuilt under other model weights: written even unchanged.
        self.rebuilt = False

    @property
    def dirty(self) -> bool:
        return self.rebuilt or self.seq != self.record.seq

    def last_values(self) -> FloatArray | None:
        return (
            None if self.hist_values is None or not len(self.hist_values) else self.hist_values[-1]
        )

    def remember(self, ts: TimeArray, values: FloatArray, keep: int) -> None:
        """Append applied rows to the bounded raw history."""
        if keep <= 0:
            return
        if self.hist_ts is None or self.hist_values is None or not len(self.hist_ts):
            self.hist_ts, self.hist_values = ts[-keep:], values[-keep:]
            return
        self.hist_ts = np.concatenate((self.hist_ts, ts))[-keep:]
        self.hist_values = np.concatenate((self.hist_values, values))[-keep:]

    def updated(self) -> StreamRecord:
        r = self.record
        return StreamRecord(
            model=r.model,
            version=self.runtime.version,
            fingerprint=self.runtime.fingerprint,
            incarnation=r.incarnation,
            seq=self.seq,
            last_ts=self.last_ts,
            state=self.state,
            forecast=self.forecast,
            history_ts=self.hist_ts,
            history_values=self.hist_values,
        )

    def view(self, stream_id: str) -> StreamView:
        last = None if math.isinf(self.last_ts) else self.last_ts
        forecast = None
        if self.forecast is not None:
            forecast = Forecast.of(self.runtime, last, self.forecast)
        return StreamView(
            stream_id=stream_id,
            model=self.record.model,
            version=self.runtime.version,
            seq=self.seq,
            last_timestamp=last,
            forecast=forecast,
        )


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
    ) -> None:
        self.registry = registry
        self.store = store
        self.metrics = metrics
        self._prefix = key_prefix
        self._ttl = ttl_seconds
        self._cas_retries = cas_retries
        self._max_observations = max_observations
        self._recent: dict[str, float] = {}
        self._bus: ForecastBus = bus if bus is not None else LocalBus()
        self._encode = encode
        self._history = history_length
        self._gap_policy = gap_policy
        self._max_gap = max_gap_steps
        self._on_model_change = on_model_change
        self._quota = StreamQuota(
            store,
            metrics,
            key_prefix=key_prefix,
            limit=max_streams_per_tenant,
            ttl_seconds=ttl_seconds,
        )
        self._batcher: MicroBatcher[_ObserveItem, ObserveResult] = MicroBatcher(
            self._observe_batch,
            max_items=batch_max_rows,
            max_delay=batch_max_delay,
            name="observe-batcher",
        )
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
            times = np.stack([series[i].timestamps for i in indices])
            state = np.broadcast_to(runtime.initial_state, (len(indices), runtime.state_size))
            forecast, _ = await self._run(runtime, x, np.ascontiguousarray(state), times)
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
        call before the stream is stored. A new stream must fit in the tenant's stream limit
        (``StreamLimitExceeded`` otherwise, nothing stored); a replaced one already does.
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
            out, new_state = await self._run(
                runtime, history.values[None], state[None], history.timestamps[None]
            )
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
            history_ts=None if history is None else history.timestamps[-self._history :],
            history_values=None if history is None else history.values[-self._history :],
        )
        if self._history <= 0:
            record = dataclasses.replace(record, history_ts=None, history_values=None)
        # Counted before it is written, so no replica ever sees more streams than the limit.
        await self._quota.admit(tenant, stream_id)
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
        """Apply the observations newer than the stream's last timestamp.

        Older ones are duplicates: skipped and reported, never applied twice. Observations
        waiting at the same moment, for any streams, are applied together (see
        ``_observe_batch``).
        """
        key = self._key(tenant, stream_id)
        self._check_size(obs)
        return await self._batcher.submit(_ObserveItem(key, stream_id, obs))

    async def observe_many(
        self, tenant: str, items: Sequence[tuple[str, Observations]]
    ) -> list[ObserveResult | ForecastError]:
        """``observe`` for many streams at once; each stream succeeds or fails on its own."""
        futures: list[asyncio.Future[ObserveResult] | ForecastError] = []
        for stream_id, obs in items:
            try:
                key = self._key(tenant, stream_id)
                self._check_size(obs)
            except ForecastError as exc:
                futures.append(exc)
                continue
            futures.append(self._batcher.submit(_ObserveItem(key, stream_id, obs)))
        out: list[ObserveResult | ForecastError] = []
        for one in futures:
            if isinstance(one, ForecastError):
                out.append(one)
                continue
            try:
                out.append(await one)
            except ForecastError as exc:
                out.append(exc)
        return out

    async def aclose(self) -> None:
        """Stop the batch worker; observations still queued fail instead of hanging."""
        await self._batcher.aclose()

    async def _observe_batch(self, batch: list[Pending[_ObserveItem, ObserveResult]]) -> None:
        """Apply one batch: one read, one model call per (model, T) and round, one write.

        Every stream's record is read with one ``get_many``. The r-th item of each stream
        runs in round r, so a stream's items apply in submission order while rows of
        different streams share a call. All changed records are written with one
        ``compare_and_set_many``; a stream whose write lost a race against another replica
        has its items put back at the head of the queue, to be re-read and re-applied.
        """
        self.metrics.batch_items.observe(len(batch))
        keys = list(dict.fromkeys(p.item.key for p in batch))
        try:
            raws = await self.store.get_many(keys)
        except StoreUnavailable as exc:
            _fail_all(batch, exc)
            return
        found = dict(zip(keys, raws, strict=True))
        rest = await self._observe_columns(batch, found)
        if rest:
            await self._observe_rows(rest, found)

    async def _observe_columns(
        self,
        batch: list[Pending[_ObserveItem, ObserveResult]],
        found: dict[str, bytes | None],
    ) -> list[Pending[_ObserveItem, ObserveResult]]:
        """The common case as columns: one reading for a stream that is once in the batch.

        Such items are grouped by record layout (same model, sizes and history length); each
        group is decoded, stepped, re-encoded and written as arrays, one row per stream, and
        all groups share one ``compare_and_set_many``. Everything else (several items or
        readings of one stream, a gap to fill or refuse, a record of other weights, a missing
        or unreadable record, a wrong feature count) is returned for the general path, which
        reaches the same results one stream at a time.
        """
        counts = Counter(p.item.key for p in batch)
        rest: list[Pending[_ObserveItem, ObserveResult]] = []
        groups: dict[tuple[int, bytes], list[Pending[_ObserveItem, ObserveResult]]] = {}
        for pending in batch:
            item = pending.item
            raw = found[item.key]
            if raw is None or counts[item.key] > 1 or len(item.obs) != 1:
                rest.append(pending)
                continue
            groups.setdefault(layout_key(raw), []).append(pending)
        stepped = _Stepped()
        for members in groups.values():
            rest.extend(await self._step_group(members, found, stepped))
        await self._commit(stepped)
        return rest

    async def _step_group(
        self,
        members: list[Pending[_ObserveItem, ObserveResult]],
        found: dict[str, bytes | None],
        out: _Stepped,
    ) -> list[Pending[_ObserveItem, ObserveResult]]:
        """Apply one reading to each stream of one record layout; returns what it left."""
        raws = [found[p.item.key] or b"" for p in members]
        try:
            first, block = decode_block(raws)
            runtime = self._runtime_for(first, members[0].item.stream_id)
        except (RecordError, ForecastError):
            return members  # the general path reports it, stream by stream
        layout = Layout.of(first)
        if layout.rows and layout.width != runtime.n_features:
            return members
        ts = np.fromiter(
            (p.item.obs.timestamps[0] for p in members), dtype=np.float64, count=len(members)
        )
        widths = np.fromiter(
            (p.item.obs.values.shape[1] for p in members), dtype=np.int64, count=len(members)
        )
        last = block["last_ts"]
        fresh = ts > last
        usable = widths == runtime.n_features
        if self._gap_policy != "accept":  # a gap is a step of more than 1.5 periods
            period = runtime.manifest.frequency
            with np.errstate(invalid="ignore"):
                usable &= ~(fresh & np.isfinite(last) & ((ts - last) / period > 1.5))
        left: list[Pending[_ObserveItem, ObserveResult]] = []
        if not usable.all():
            left = [p for p, ok in zip(members, usable.tolist(), strict=True) if not ok]
            members = [p for p, ok in zip(members, usable.tolist(), strict=True) if ok]
            raws = [r for r, ok in zip(raws, usable.tolist(), strict=True) if ok]
            block, ts, fresh = block[usable], ts[usable], fresh[usable]
        if not members:
            return left
        forecast_of = _forecast_maker(runtime)
        model, version = first.model, runtime.version
        has_forecast = layout.horizon > 0
        for j in np.flatnonzero(~fresh).tolist():  # duplicates: answered from the record
            pending, old = members[j], block[j]
            seen = float(old["last_ts"])
            origin = None if math.isinf(seen) else seen
            view = StreamView(
                pending.item.stream_id,
                model,
                version,
                int(old["seq"]),
                origin,
                forecast_of(origin, old["forecast"]) if has_forecast else None,
            )
            out.done.append((pending, ObserveResult(view, 0, (float(ts[j]),)), model))
        rows = np.flatnonzero(fresh)
        if not rows.size:
            return left
        values = np.concatenate([members[j].item.obs.values for j in rows.tolist()])
        state = np.ascontiguousarray(block["state"][rows], dtype=np.float32)
        forecast, state_out = await self._run(runtime, values[:, None, :], state, ts[rows][:, None])
        new = self._next_records(layout, block[rows], ts[rows], values, forecast, state_out)
        encoded = encode_block(new)
        seqs, times = new["seq"].tolist(), ts[rows].tolist()
        for k, j in enumerate(rows.tolist()):
            pending = members[j]
            view = StreamView(
                pending.item.stream_id,
                model,
                version,
                seqs[k],
                times[k],
                forecast_of(times[k], forecast[k]),
            )
            out.done.append((pending, ObserveResult(view, 1, ()), model))
            out.writes.append((pending.item.key, token_of(raws[j]), encoded[k]))
        return left

    def _next_records(
        self,
        layout: Layout,
        old: npt.NDArray[np.void],
        ts: TimeArray,
        values: FloatArray,
        forecast: FloatArray,
        state: FloatArray,
    ) -> npt.NDArray[np.void]:
        """The records after one more reading each, as ``_Work.updated`` would build them."""
        keep = self._history
        rows = min(layout.rows + 1, keep) if keep > 0 else layout.rows
        _, horizon, n_quantiles = forecast.shape
        after = Layout(
            name_len=layout.name_len,
            state_size=int(state.shape[1]),
            horizon=int(horizon),
            quantiles=int(n_quantiles),
            rows=rows,
            width=int(values.shape[1]) if rows else 0,
        )
        new = np.empty(len(old), dtype=after.dtype)
        for name in ("magic", "format", "incarnation", "fingerprint", "version", "name"):
            new[name] = old[name]
        new["flags"] = FLAG_FORECAST
        new["seq"] = old["seq"] + 1
        new["last_ts"] = ts
        new["name_len"] = after.name_len
        new["horizon"] = after.horizon
        new["quantiles"] = after.quantiles
        new["state_size"] = after.state_size
        new["nonce"] = new_nonces(len(old))
        new["rows"] = after.rows
        new["width"] = after.width
        new["state"] = state
        new["forecast"] = forecast
        if keep <= 0:  # the history is kept as it was (``_Work.remember`` adds nothing)
            if rows:
                new["history_ts"] = old["history_ts"]
                new["history_values"] = old["history_values"]
        elif layout.rows:
            new["history_ts"] = np.concatenate((old["history_ts"], ts[:, None]), axis=1)[:, -rows:]
            new["history_values"] = np.concatenate(
                (old["history_values"], values[:, None, :]), axis=1
            )[:, -rows:]
        else:
            new["history_ts"] = ts[:, None]
            new["history_values"] = values[:, None, :]
        return new

    async def _commit(self, stepped: _Stepped) -> None:
        """Write what one path of a batch made in one round trip, then answer its items.

        A stream whose write lost a race against another replica has its items retried from
        the head of the queue (up to ``cas_retries``), and an outage fails every item.
        """
        lost: set[str] = set()
        if stepped.writes:
            try:
                written = await self.store.compare_and_set_many(stepped.writes, self._ttl)
            except StoreUnavailable as exc:
                _fail_all([pending for pending, _, _ in stepped.done], exc)
                return
            lost = {key for (key, _, _), ok in zip(stepped.writes, written, strict=True) if not ok}
        retry: list[Pending[_ObserveItem, ObserveResult]] = []
        announce: list[tuple[str, ObserveResult]] = []
        applied: Counter[str] = Counter()
        skipped: Counter[str] = Counter()
        for pending, result, model in stepped.done:
            key = pending.item.key
            if pending.future.done():  # its submitter is gone (cancelled)
                continue
            if key in lost:
                if pending.attempts + 1 >= self._cas_retries:
                    pending.future.set_exception(_too_fast(pending.item.stream_id))
                else:
                    retry.append(pending)
                continue
            self._touch(key)
            pending.future.set_result(result)
            if result.applied:
                applied[model] += result.applied
                announce.append((key, result))
            if result.skipped:
                skipped[model] += len(result.skipped)
        for model, count in applied.items():
            self.metrics.observations.labels(model).inc(count)
        for model, count in skipped.items():
            self.metrics.duplicates.labels(model).inc(count)
        if lost:
            self.metrics.cas_conflicts.inc(len(lost))
        if retry:
            self._batcher.retry_first(retry)
        await self._announce(announce)

    async def _observe_rows(
        self,
        batch: list[Pending[_ObserveItem, ObserveResult]],
        found: dict[str, bytes | None],
    ) -> None:
        """The general path, one stream at a time: several items per stream, gaps, replay."""
        keys = list(dict.fromkeys(p.item.key for p in batch))
        raws = [found[key] for key in keys]
        work: dict[str, _Work | ForecastError] = {}
        stream_ids = {p.item.key: p.item.stream_id for p in batch}
        for key, raw in zip(keys, raws, strict=True):
            try:
                work[key] = await self._work_for(
                    key, self._decode(raw, stream_ids[key]), stream_ids[key]
                )
            except ForecastError as exc:
                work[key] = exc
        live: list[Pending[_ObserveItem, ObserveResult]] = []
        for pending in batch:
            target = work[pending.item.key]
            try:
                if isinstance(target, ForecastError):
                    raise target
                pending.item.obs.check_features(target.runtime.n_features)
            except ForecastError as exc:
                pending.future.set_exception(exc)
                continue
            live.append(pending)

        views: list[StreamView | None] = [None] * len(live)
        applied = [0] * len(live)
        skipped: list[tuple[float, ...]] = [()] * len(live)
        filled = [0] * len(live)
        for level in rounds([p.item.key for p in live]):
            # (index into live, timestamps and values to run, gap-filled rows among them)
            rows: list[tuple[int, TimeArray, FloatArray]] = []
            # Items with a gap to fill from the model's median: each runs on its own path.
            gapped: list[_Gapped] = []
            for i in level:
                item = live[i].item
                w = _work(work, item.key)
                start = fresh_start(item.obs.timestamps, w.last_ts)
                skipped[i] = tuple(float(t) for t in item.obs.timestamps[:start])
                if start == len(item.obs):
                    views[i] = w.view(item.stream_id)
                    continue
                ts, values = item.obs.timestamps[start:], item.obs.values[start:]
                try:
                    missing = self._missing(w, ts, start)
                    if missing is not None and self._gap_policy == "median":
                        gapped.append(_Gapped(i, ts, values, missing, start))
                        continue
                    if missing is not None:
                        ts, values = self._fill_forward(w, ts, values, missing, start)
                except ForecastError as exc:
                    live[i].future.set_exception(exc)
                    continue
                filled[i] = len(ts) - (len(item.obs) - start)
                rows.append((i, ts, values))
            groups = group_rows(
                [(_work(work, live[i].item.key).runtime, len(t)) for i, t, _ in rows]
            )
            for (runtime, _steps), members in groups.items():
                chosen = [rows[m] for m in members]
                x = np.stack([values for _, _, values in chosen])
                times = np.stack([ts for _, ts, _ in chosen])
                state = np.stack([_work(work, live[i].item.key).state for i, _, _ in chosen])
                forecast, state_out = await self._run(runtime, x, state, times)
                for j, (i, ts, values) in enumerate(chosen):
                    item = live[i].item
                    w = _work(work, item.key)
                    w.state, w.forecast = state_out[j], forecast[j]
                    w.seq += len(ts)
                    w.last_ts = float(ts[-1])
                    w.remember(ts, values, self._history)
                    applied[i] = len(ts) - filled[i]
                    views[i] = w.view(item.stream_id)
            for gap in gapped:
                item = live[gap.index].item
                w = _work(work, item.key)
                try:
                    filled[gap.index] = await self._fill_median(w, gap)
                except ForecastError as exc:
                    live[gap.index].future.set_exception(exc)
                    continue
                applied[gap.index] = len(gap.ts)
                views[gap.index] = w.view(item.stream_id)

        stepped = _Stepped()
        for one in work.values():
            if isinstance(one, _Work) and one.dirty:
                stepped.writes.append((one.key, one.record.token, one.updated().encode()))
        for i, pending in enumerate(live):
            if pending.future.done():  # refused on its own (a gap it may not bridge)
                continue
            view = views[i]
            assert view is not None
            result = ObserveResult(view, applied[i], skipped[i], filled=filled[i])
            stepped.done.append((pending, result, _work(work, pending.item.key).runtime.name))
        await self._commit(stepped)

    async def _work_for(self, key: str, record: StreamRecord, stream_id: str) -> _Work:
        """The stream's working copy, rebuilt by replay if its model changed (by setting)."""
        try:
            return _Work(key, record, self._runtime_for(record, stream_id))
        except StateMismatch:
            if self._on_model_change != "replay" or record.history_ts is None:
                raise
        # Replay the kept raw history through the model version now served under that name,
        # from its initial state; the token stays the one read, so the rebuild is a CAS too.
        try:
            runtime = self.registry.get(record.model)
        except UnknownModel as exc:
            raise StateMismatch(
                f"stream {stream_id!r} cannot be replayed: no version of {record.model!r} is "
                "served; re-warm it with PUT",
                field="stream_id",
            ) from exc
        assert record.history_values is not None
        if record.history_values.shape[1] != runtime.n_features:
            raise StateMismatch(
                f"stream {stream_id!r} cannot be replayed: its history has "
                f"{record.history_values.shape[1]} feature(s), {runtime.name!r} version "
                f"{runtime.version} takes {runtime.n_features}; re-warm it with PUT",
                field="stream_id",
            )
        assert record.history_ts is not None
        forecast, state = await self._run(
            runtime,
            record.history_values[None],
            runtime.initial_state[None],
            record.history_ts[None],
        )
        work = _Work(key, record, runtime)
        work.state, work.forecast, work.rebuilt = state[0], forecast[0], True
        self.metrics.streams_rebuilt.labels(runtime.name).inc()
        return work

    def _missing(self, w: _Work, ts: TimeArray, offset: int) -> IntArray | None:
        """How many readings are missing right before each fresh row; None if nothing is.

        A gap is a step of more than 1.5 model periods; it misses round(step / period) - 1
        readings. The first row has a gap only after a reading the stream already holds.
        ``accept`` never looks; ``reject`` refuses any gap (422); a gap longer than
        ``max_gap_steps`` always needs the stream re-warmed (409), under every other policy.
        """
        if self._gap_policy == "accept":
            return None
        period = w.runtime.manifest.frequency
        previous = w.last_ts if math.isfinite(w.last_ts) else float(ts[0])
        steps = np.diff(ts, prepend=previous) / period
        missing = np.where(steps > 1.5, np.rint(steps).astype(np.int64) - 1, 0)
        if not missing.any():
            return None
        if int(missing.max()) > self._max_gap:
            row = int(np.argmax(missing > self._max_gap))
            raise Conflict(
                f"{int(missing[row])} readings are missing, more than "
                f"max_gap_steps={self._max_gap}; re-warm the stream with PUT and a history",
                field=f"observations[{offset + row}].timestamp",
            )
        if self._gap_policy == "reject":
            row = int(np.argmax(missing > 0))
            raise InvalidInput(
                f"{int(missing[row])} reading(s) missing before this one (one every "
                f"{period:g} s); send them, or re-warm the stream",
                field=f"observations[{offset + row}].timestamp",
            )
        return missing

    def _fill_forward(
        self, w: _Work, ts: TimeArray, values: FloatArray, missing: IntArray, offset: int
    ) -> tuple[TimeArray, FloatArray]:
        """Insert each missing reading as a copy of the last one before it (gap_policy forward).

        No model call is needed, so these rows join the batched path like any others.
        """
        period = w.runtime.manifest.frequency
        out_ts: list[float] = []
        out_values: list[FloatArray] = []
        for j in range(len(ts)):
            gap = int(missing[j])
            if gap:
                source = values[j - 1] if j else w.last_values()
                if source is None:
                    raise Conflict(
                        "cannot fill the gap forward: the stream keeps no history "
                        "(history_length=0); re-warm it with PUT",
                        field=f"observations[{offset + j}].timestamp",
                    )
                base = float(ts[j - 1]) if j else w.last_ts
                out_ts.extend(base + k * period for k in range(1, gap + 1))
                out_values.extend([source] * gap)
            out_ts.append(float(ts[j]))
            out_values.append(values[j])
        return np.array(out_ts, dtype=np.float64), np.stack(out_values).astype(np.float32)

    async def _fill_median(self, w: _Work, gap: _Gapped) -> int:
        """Apply fresh rows with gaps, filling each missing reading from the model's median.

        The k-th missing reading after a known one gets, in the target column, step k of the
        median forecast made from the state right before the gap, and the known reading's
        values in the other columns (nothing forecasts them). A gap longer than the horizon H
        is rolled out: its first H filled rows are fed, and the forecast after them fills the
        next H. So the rows before a gap must run before it is filled: a few model calls for
        this one stream, which is why such requests (rare) leave the batched path.

        ``w`` changes only once every call has succeeded, so a refused or failed request
        leaves the stream as it was read. Returns the number of filled rows.
        """
        runtime = w.runtime
        manifest = runtime.manifest
        horizon, period = manifest.horizon, manifest.frequency
        target, median = manifest.features.index(manifest.target), manifest.median_index
        state, forecast = w.state, w.forecast
        known = w.last_values()
        fed_ts: list[float] = []
        fed_values: list[FloatArray] = []
        queued = 0  # rows at the end of ``fed_*`` not yet run
        for j, missing in enumerate(int(m) for m in gap.missing):
            if missing:
                field = f"observations[{gap.offset + j}].timestamp"
                if queued:
                    forecast, state = await self._feed(
                        runtime,
                        fed_values[len(fed_values) - queued :],
                        fed_ts[len(fed_ts) - queued :],
                        state,
                    )
                    queued = 0
                if forecast is None:
                    raise Conflict(
                        "cannot fill the gap from the model's forecast: the stream holds none; "
                        "re-warm it with PUT and a history",
                        field=field,
                    )
                if known is None and runtime.n_features > 1:
                    raise Conflict(
                        "cannot carry the other features over the gap: the stream keeps no "
                        "history (history_length=0); re-warm it with PUT",
                        field=field,
                    )
                carried = np.zeros(runtime.n_features, np.float32) if known is None else known
                base = float(gap.ts[j - 1]) if j else w.last_ts
                for k in range(missing):
                    if k and not k % horizon:  # the forecast is used up: roll it out
                        forecast, state = await self._feed(
                            runtime,
                            fed_values[len(fed_values) - queued :],
                            fed_ts[len(fed_ts) - queued :],
                            state,
                        )
                        queued = 0
                    row = carried.copy()
                    row[target] = forecast[k % horizon, median]
                    fed_ts.append(base + (k + 1) * period)
                    fed_values.append(row)
                    queued += 1
            fed_ts.append(float(gap.ts[j]))
            fed_values.append(gap.values[j])
            known = gap.values[j]
            queued += 1
        forecast, state = await self._feed(
            runtime, fed_values[len(fed_values) - queued :], fed_ts[len(fed_ts) - queued :], state
        )
        ts = np.array(fed_ts, dtype=np.float64)
        w.state, w.forecast = state, forecast
        w.seq += len(ts)
        w.last_ts = float(ts[-1])
        w.remember(ts, np.stack(fed_values).astype(np.float32, copy=False), self._history)
        return len(ts) - len(gap.ts)

    async def _feed(
        self,
        runtime: ModelRuntime,
        rows: Sequence[FloatArray],
        times: Sequence[float],
        state: FloatArray,
    ) -> tuple[FloatArray, FloatArray]:
        """Run one stream's rows from ``state``: its forecast [H, Q] and new state [S]."""
        forecast, state_out = await self._run(
            runtime, np.stack(rows)[None], state[None], np.array(times, dtype=np.float64)[None]
        )
        return forecast[0], state_out[0]

    async def _announce(self, updates: Sequence[tuple[str, ObserveResult]]) -> None:
        """Publish updates of the streams someone subscribes to (usually none: free)."""
        if self._encode is None or not updates:
            return
        await self._bus.refresh()
        channels = [stream_channel(self._prefix, key) for key, _ in updates]
        wanted = self._bus.has_subscribers(channels)
        messages = [
            (channel, self._encode(result))
            for channel, want, (_, result) in zip(channels, wanted, updates, strict=True)
            if want
        ]
        if messages:
            await self._bus.publish(messages)

    def subscribe(
        self, tenant: str, stream_id: str
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Encoded updates of one stream, from whichever replica makes them."""
        return self._bus.subscribe(stream_channel(self._prefix, self._key(tenant, stream_id)))

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
        seen = await self._quota.seen(tenant, stream_id)
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

    async def _read(self, key: str, stream_id: str) -> StreamRecord:
        return self._decode(await self.store.get(key), stream_id)

    @staticmethod
    def _decode(raw: bytes | None, stream_id: str) -> StreamRecord:
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
        self, runtime: ModelRuntime, x: FloatArray, state: FloatArray, times: TimeArray
    ) -> tuple[FloatArray, FloatArray]:
        """One model call; ``times`` [B, T] are the rows' timestamps (for graphs that read them)."""
        labels = (runtime.name, str(runtime.version))
        start = time.perf_counter()
        if x.shape[0] * x.shape[1] <= _INLINE_STEPS:
            # A handful of steps costs less than the hand-off to a worker thread.
            forecast, state_out = runtime.run(x, state, times)
        else:
            forecast, state_out = await runtime.run_async(x, state, times)
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


def _too_fast(stream_id: str) -> Conflict:
    return Conflict(
        f"stream {stream_id!r} is being written too fast from elsewhere; retry",
        field="stream_id",
    )


def _forecast_maker(runtime: ModelRuntime) -> Callable[[float | None, FloatArray], Forecast]:
    """``Forecast.of`` for one runtime, with the manifest read once for many streams."""
    m = runtime.manifest
    name, version, target = m.name, m.version, m.target
    quantiles, frequency, median = tuple(m.quantiles), m.frequency, m.median_index

    def make(origin: float | None, values: FloatArray) -> Forecast:
        return Forecast(name, version, target, quantiles, frequency, origin, values, median)

    return make


class _Stepped:
    """What one path of a batch made: answers to give once its records are written."""

    __slots__ = ("done", "writes")

    def __init__(self) -> None:
        self.done: list[tuple[Pending[_ObserveItem, ObserveResult], ObserveResult, str]] = []
        self.writes: list[tuple[str, bytes | None, bytes]] = []


def _work(work: dict[str, _Work | ForecastError], key: str) -> _Work:
    w = work[key]
    assert isinstance(w, _Work)
    return w


def _fail_all(batch: Sequence[Pending[_ObserveItem, ObserveResult]], exc: Exception) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(exc)
