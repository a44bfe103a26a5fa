"""The records of one batch's streams: where each came from, and the groups they form.

A record comes from what a lost compare-and-set returned (a *hint*, current as of that
call), else from the record cache (a guess, to be proven by the batch's compare-and-set),
else from one ``get_many`` for all the others (current as of that read). Records of one
layout form one ``Group``: one block decoded at once, one ``Streams``. A record made by
weights that are not served any more is refused, or replayed from its kept history through
the version now served (``on_model_change="replay"``), one model call per group.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from service.core.calls import ModelCalls
from service.core.observations import Readings
from service.core.streams import Streams
from service.errors import (
    ForecastError,
    InvalidInput,
    StateMismatch,
    UnknownModel,
    UnknownStream,
    WrongModel,
)
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.runtime import ModelRuntime
from service.state.record import Kind, RecordError, decode_block, layout_key, stamp_of

if TYPE_CHECKING:
    from service.core.cache import RecordCache
    from service.core.engine import Engine, Part

Refusal = Callable[[str], ForecastError]


class Group:
    """Streams of one record layout and one serving runtime, and which key is which slot."""

    __slots__ = ("keys", "kind", "slot", "streams")

    def __init__(self, streams: Streams, keys: list[str], kind: Kind) -> None:
        self.streams = streams
        self.keys = keys
        self.kind = kind
        self.slot = {key: i for i, key in enumerate(keys)}


def unknown(stream_id: str) -> UnknownStream:
    return UnknownStream(
        f"stream {stream_id!r} does not exist (never created, deleted or expired); "
        "create it with PUT",
        field="stream_id",
    )


def unreadable(error: RecordError) -> Refusal:
    def refuse(stream_id: str) -> ForecastError:
        return StateMismatch(
            f"stream {stream_id!r} holds a record this service cannot read ({error}); "
            "re-create it with PUT",
            field="stream_id",
        )

    return refuse


def runtime_for(registry: ModelRegistry, kind: Kind, stream_id: str) -> ModelRuntime:
    """The runtime that made this state; never another one (``StateMismatch``)."""
    try:
        runtime = registry.get(kind.model, kind.version)
    except UnknownModel as exc:
        raise StateMismatch(
            f"stream {stream_id!r} was built by model {kind.model!r} version "
            f"{kind.version}, which is no longer served; re-warm it with PUT and a history",
            field="stream_id",
        ) from exc
    if runtime.fingerprint != kind.fingerprint:
        raise StateMismatch(
            f"stream {stream_id!r} was built by other weights of {kind.model!r} version "
            f"{kind.version} (fingerprint {kind.fingerprint[:12]}, serving "
            f"{runtime.fingerprint[:12]}); re-warm it with PUT and a history",
            field="stream_id",
        )
    return runtime


def _raised(make: Callable[[str], object]) -> Refusal:
    def refuse(stream_id: str) -> ForecastError:
        try:
            make(stream_id)
        except ForecastError as exc:
            return exc
        raise AssertionError("a refusal that did not refuse")

    return refuse


class RecordSet:
    """Every record a batch needs, decoded into groups."""

    def __init__(self) -> None:
        self.groups: list[Group] = []
        self._raw: dict[str, bytes | None] = {}
        self._verified: set[str] = set()
        self._fetched: list[tuple[str, bytes]] = []
        self._group: dict[str, int] = {}
        self._kind: dict[str, Kind] = {}
        self._refusal: dict[str, Refusal] = {}
        #: Groups to rebuild from their history: (block's group key, runtime now served).
        self._replay: list[tuple[list[str], Kind, np.ndarray, ModelRuntime]] = []

    @classmethod
    async def read(cls, engine: Engine, parts: Sequence[Part], keys: Sequence[str]) -> RecordSet:
        """Gather the records of ``keys``: hints, then the cache, then one read for the rest."""
        records = cls()
        unique = dict.fromkeys(keys)
        raw = records._raw
        for part in parts:
            for key, value in part.hints.items():
                if key in unique:
                    raw[key] = value
                    records._verified.add(key)
            part.hints = {}  # current once: a later attempt must not step from it again
        misses: list[str] = []
        cached = engine.cache.get
        for key in unique:
            if key not in raw:
                value = cached(key)
                if value is None:
                    misses.append(key)
                else:
                    raw[key] = value
        if misses:
            for key, value in zip(misses, await engine.store.get_many(misses), strict=True):
                raw[key] = value
                records._verified.add(key)
                if value is not None:
                    records._fetched.append((key, value))
        policies = engine.policies
        records._decode(engine.registry, policies.on_model_change, policies.history_length)
        await records._rebuild(engine.calls, engine.metrics, policies.history_length)
        return records

    def _decode(self, registry: ModelRegistry, on_change: str, keep: int) -> None:
        by_layout: dict[tuple[int, bytes], list[str]] = {}
        for key, value in self._raw.items():
            if value is not None:
                by_layout.setdefault(layout_key(value), []).append(key)
        for keys in by_layout.values():
            try:
                kind, block = decode_block([self._raw[k] or b"" for k in keys])
            except RecordError as exc:
                for key in keys:
                    self._refusal[key] = unreadable(exc)
                continue
            for key in keys:
                self._kind[key] = kind
            try:
                runtime = runtime_for(registry, kind, "")
            except StateMismatch:
                refuse = _raised(functools.partial(runtime_for, registry, kind))
                replay = self._replayable(registry, kind, on_change)
                if isinstance(replay, ModelRuntime):
                    self._replay.append((keys, kind, block, replay))
                else:
                    for key in keys:
                        self._refusal[key] = replay or refuse
                continue
            self._add(Group(Streams.of_block(runtime, block, kind.layout, keep), keys, kind))

    @staticmethod
    def _replayable(
        registry: ModelRegistry, kind: Kind, on_change: str
    ) -> ModelRuntime | Refusal | None:
        """The runtime to replay this kind's history through, or why not (None: the usual
        refusal, a state of other weights)."""
        if on_change != "replay" or not kind.layout.rows:
            return None
        try:
            runtime = registry.get(kind.model)
        except UnknownModel:
            return lambda sid: StateMismatch(
                f"stream {sid!r} cannot be replayed: no version of {kind.model!r} is "
                "served; re-warm it with PUT",
                field="stream_id",
            )
        if kind.layout.width != runtime.n_features:
            return lambda sid: StateMismatch(
                f"stream {sid!r} cannot be replayed: its history has "
                f"{kind.layout.width} feature(s), {runtime.name!r} version "
                f"{runtime.version} takes {runtime.n_features}; re-warm it with PUT",
                field="stream_id",
            )
        return runtime

    def _add(self, group: Group) -> None:
        index = len(self.groups)
        self.groups.append(group)
        for key in group.keys:
            self._group[key] = index

    async def _rebuild(self, calls: ModelCalls, metrics: Metrics, keep: int) -> None:
        """Replay the kept history of every stream of other weights, one call per group;
        the token stays the one read, so the rebuilt record is a compare-and-set too."""
        for keys, kind, block, runtime in self._replay:
            x = np.ascontiguousarray(block["history_values"], dtype=np.float32)
            times = np.ascontiguousarray(block["history_ts"], dtype=np.float64)
            initial = np.broadcast_to(runtime.initial_state, (len(keys), runtime.state_size))
            forecast, state = await calls.run(runtime, x, np.ascontiguousarray(initial), times)
            streams = Streams(
                runtime,
                incarnation=block["incarnation"],
                seq=block["seq"].astype(np.int64),
                last_ts=block["last_ts"].astype(np.float64),
                state=state,
                forecast=forecast,
                history_ts=block["history_ts"],
                history_values=block["history_values"],
                history_length=keep,
                rebuilt=True,
                tail=block if kind.layout.scored else None,
            )
            self._add(Group(streams, keys, kind))
            metrics.streams_rebuilt.labels(runtime.name).inc(len(keys))
        self._replay = []

    def refusal(self, key: str, readings: Readings, item: int) -> ForecastError | None:
        """Why item ``item`` of ``readings`` cannot apply to its stream's record, if it cannot."""
        stream_id = readings.stream_ids[item]
        if self._raw.get(key) is None:
            return unknown(stream_id)
        kind = self._kind.get(key)
        want = readings.require
        if want is not None and kind is not None:
            name, version = want
            if kind.model != name or (version is not None and kind.version != version):
                return WrongModel(
                    f"stream {stream_id!r} runs model {kind.model!r} version {kind.version}",
                    model=kind.model,
                    version=kind.version,
                )
        refuse = self._refusal.get(key)
        if refuse is not None:
            return refuse(stream_id)
        n_features = self.groups[self._group[key]].streams.runtime.n_features
        if readings.width != n_features:
            return InvalidInput(
                f"the model takes {n_features} value(s) per observation, got {readings.width}",
                field="observations[0].values",
            )
        return None

    def group_of(self, key: str) -> int:
        return self._group[key]

    def stamp(self, key: str) -> bytes:
        value = self._raw[key]
        assert value is not None
        return stamp_of(value)

    def verified(self, key: str) -> bool:
        """Whether the record was read from the store in this batch (not guessed from cache)."""
        return key in self._verified

    def remember(
        self, cache: RecordCache, written: dict[str, bytes], lost: dict[str, bytes | None]
    ) -> None:
        """Tell the cache what the store now holds, as far as this batch learned it."""
        known = [(k, v) for k, v in self._fetched if k not in written]
        known += [(k, v) for k, v in written.items() if k not in lost]
        for key, current in lost.items():
            if current is None:
                cache.drop(key)
            else:
                known.append((key, current))
        cache.put_many(known)
