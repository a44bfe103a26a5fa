"""The observe engine: every reading of every interface takes this one path.

Requests hand it ``Readings`` (stream ids, timestamps, a values matrix); those waiting at the
same moment form one batch (``MicroBatcher``), and a batch is applied in steps:

1. **Records.** Each stream's record comes from what a lost compare-and-set returned, else
   from the record cache, else from one ``get_many`` for all the rest.
2. **Groups.** Records of one layout are decoded as one block (``Streams``); a record made by
   weights no longer served is refused or replayed from its history (``on_model_change``).
3. **Rounds.** The r-th item of each stream runs in round r, so a stream's items apply in
   order while rows of different streams share calls. Each round is planned as columns
   (``planner``): duplicates, untimed steps, gaps; then one model call per model and T.
4. **One compare-and-set** for the batch: changed records written, and every answer made
   from a cached record verified, each on the record's stamp. A stream whose item lost is
   retried from the record the store returned (no read), at the head of the queue.
5. **Answers** as columns (``AnswerChunk``), metrics per model, announcements to subscribers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from service.batching import MicroBatcher, Pending, group_rows, rounds
from service.core.answers import AnswerChunk, Answers
from service.core.cache import RecordCache
from service.core.calls import ModelCalls
from service.core.gaps import GapPolicy
from service.core.live import LiveAccuracy
from service.core.observations import IntArray, Readings
from service.core.planner import Call, RoundPlan, plan_unit
from service.core.records import Group, RecordSet
from service.errors import Conflict, ForecastError, StoreUnavailable
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.state.base import StateStore
from service.state.cas import Item
from service.state.record import encode_block

#: Publishes updates: (stream key, the answer's chunk and row); the result is built only for
#: streams someone subscribes to.
Announce = Callable[[list[tuple[str, AnswerChunk, int]]], Awaitable[None]]


@dataclass(eq=False, slots=True)
class Part:
    """One request's readings in the queue, and its answers as they are made."""

    readings: Readings
    answers: Answers
    #: The request's items this part still carries (a retry carries the ones that lost).
    items: list[int]
    #: Records a lost compare-and-set returned (None: no record), to step from without a read.
    hints: dict[str, bytes | None] = field(default_factory=dict)


def part_size(part: Part) -> int:
    return len(part.items)


@dataclass(frozen=True, slots=True)
class Policies:
    """How the engine treats gaps, model changes and the history it keeps."""

    gap_policy: GapPolicy = "accept"
    max_gap_steps: int = 48
    on_model_change: str = "reject"
    history_length: int = 48
    #: Whether readings are scored against their forecasts (``service.core.scoring``).
    scoring: bool = True
    #: How far outside the outer interval (times its width) a reading is an anomaly.
    anomaly_margin: float = 0.5


class Engine:
    """Applies batches of ``Part``s to the streams in ``store``."""

    def __init__(
        self,
        registry: ModelRegistry,
        store: StateStore,
        metrics: Metrics,
        calls: ModelCalls,
        cache: RecordCache,
        policies: Policies,
        *,
        ttl_seconds: float,
        cas_retries: int,
        batch_max_rows: int,
        batch_max_delay: float,
        announce: Announce,
        touch: Callable[[Sequence[str]], None],
    ) -> None:
        self.registry = registry
        self.store = store
        self.metrics = metrics
        self.cache = cache
        self.calls = calls
        self.policies = policies
        self._ttl = ttl_seconds
        self._cas_retries = cas_retries
        self._announce = announce
        self._touch = touch
        self.live = LiveAccuracy(metrics)
        self._batcher: MicroBatcher[Part, Answers] = MicroBatcher(
            self._batch,
            max_items=batch_max_rows,
            max_delay=batch_max_delay,
            name="observe-batcher",
            size=part_size,
        )

    async def apply(self, readings: Readings, answers: Answers, items: list[int]) -> Answers:
        """Apply ``items`` of ``readings`` (keys set); the others are answered already."""
        if not items:
            return answers
        return await self._batcher.submit(Part(readings, answers, items))

    async def aclose(self) -> None:
        await self._batcher.aclose()

    async def _batch(self, batch: list[Pending[Part, Answers]]) -> None:
        parts = [p.item for p in batch]
        owners = [(p, i) for p, part in enumerate(parts) for i in part.items]
        self.metrics.batch_items.observe(len(owners))
        keys = [parts[p].readings.keys[i] for p, i in owners]
        try:
            records = await RecordSet.read(self, parts, keys)
        except StoreUnavailable as exc:
            for p, i in owners:
                parts[p].answers.fail(i, exc)
            self._settle(batch)
            return
        sources, entries = merge(parts, owners)
        try:
            done = await self._run(sources, entries, keys, records)
        except ForecastError as exc:  # a model that failed to run: nothing was written
            for p, i in owners:
                parts[p].answers.fail(i, exc)
            self._settle(batch)
            return
        updates = await self._commit(parts, owners, keys, records, done)
        self._settle(batch)
        if updates:
            await self._announce(updates)

    async def _run(
        self,
        sources: list[Readings],
        entries: list[tuple[int, int]],
        keys: list[str],
        records: RecordSet,
    ) -> list[tuple[int, AnswerChunk, int] | tuple[int, ForecastError]]:
        """Plan and run every round; each entry's answer (or error), not yet given."""
        out: list[tuple[int, AnswerChunk, int] | tuple[int, ForecastError]] = []
        live: list[int] = []
        for e, (source, i) in enumerate(entries):
            error = records.refusal(keys[e], sources[source], i)
            if error is None:
                live.append(e)
            else:
                out.append((e, error))
        for level in rounds([keys[e] for e in live]):
            units: dict[tuple[int, int], list[int]] = {}
            for j in level:
                e = live[j]
                units.setdefault((records.group_of(keys[e]), entries[e][0]), []).append(e)
            plans: list[tuple[Group, list[int], RoundPlan]] = []
            for (g, source), members in units.items():
                group = records.groups[g]
                slots = np.array([group.slot[keys[e]] for e in members], dtype=np.int64)
                items = np.array([entries[e][1] for e in members], dtype=np.int64)
                plan = plan_unit(group.streams, slots, sources[source], items, self.policies)
                plans.append((group, members, plan))
            await self._execute(plans)
            for group, members, plan in plans:
                chunk = plan.answer(group.streams)
                for row, e in enumerate(members):
                    error = plan.errors.get(row)
                    out.append((e, error) if error is not None else (e, chunk, row))
        return out

    async def _execute(self, plans: list[tuple[Group, list[int], RoundPlan]]) -> None:
        """Every phase of a round: one model call per (model, T) across groups and parts."""
        phase = 0
        while True:
            calls: list[tuple[Group, Call]] = []
            for group, _, plan in plans:
                calls += [(group, call) for call in plan.calls(group.streams, phase)]
            if not calls:
                return
            for (runtime, _), members in group_rows(
                [(group.streams.runtime, call.steps) for group, call in calls]
            ).items():
                chosen = [calls[m] for m in members]
                x = np.concatenate([c.x for _, c in chosen])
                times = np.concatenate([c.times for _, c in chosen])
                state = np.concatenate([g.streams.state[c.slots] for g, c in chosen])
                forecast, state_out = await self.calls.run(runtime, x, state, times)
                start = 0
                for group, call in chosen:
                    end = start + len(call.slots)
                    group.streams.apply(
                        call.slots,
                        np.full(len(call.slots), call.steps, dtype=np.int64),
                        call.times.reshape(-1),
                        call.x.reshape(-1, call.x.shape[2]),
                        forecast[start:end],
                        state_out[start:end],
                    )
                    start = end
            phase += 1

    async def _commit(
        self,
        parts: list[Part],
        entries: list[tuple[int, int]],
        keys: list[str],
        records: RecordSet,
        done: list[tuple[int, AnswerChunk, int] | tuple[int, ForecastError]],
    ) -> list[tuple[str, AnswerChunk, int]]:
        """Write and verify in one round trip, then answer; the updates to announce."""
        touched = {keys[e] for e, *_ in done}
        items: list[Item] = []
        written: dict[str, bytes] = {}
        for group in records.groups:
            streams = group.streams
            dirty = streams.dirty
            for slots, block in streams.next_records(dirty) if len(dirty) else ():
                for slot, value in zip(slots.tolist(), encode_block(block), strict=True):
                    key = group.keys[slot]
                    written[key] = value
                    items.append((key, records.stamp(key), value))
        for key in touched:
            if key not in written and not records.verified(key):
                items.append((key, records.stamp(key), None))
        lost: dict[str, bytes | None] = {}
        if items:
            try:
                outcomes = await self.store.commit_many(items, self._ttl)
            except StoreUnavailable as exc:
                for key in written:
                    self.cache.drop(key)
                for e, *_ in done:
                    p, i = entries[e]
                    parts[p].answers.fail(i, exc)
                return []
            for (key, _, _), outcome in zip(items, outcomes, strict=True):
                if outcome is not True:
                    lost[key] = outcome
        records.remember(self.cache, written, lost)
        if lost:
            self.metrics.cas_conflicts.inc(len(lost))
            for e, (p, _) in enumerate(entries):
                if keys[e] in lost:
                    parts[p].hints[keys[e]] = lost[keys[e]]
        return self._answer(parts, entries, keys, done, lost)

    def _answer(
        self,
        parts: list[Part],
        entries: list[tuple[int, int]],
        keys: list[str],
        done: list[tuple[int, AnswerChunk, int] | tuple[int, ForecastError]],
        lost: dict[str, bytes | None],
    ) -> list[tuple[str, AnswerChunk, int]]:
        applied: Counter[str] = Counter()
        skipped: Counter[str] = Counter()
        announce: list[tuple[str, AnswerChunk, int]] = []
        answered: list[str] = []
        scored: dict[int, tuple[AnswerChunk, list[int]]] = {}
        for one in done:
            e = one[0]
            key = keys[e]
            if key in lost:
                continue
            p, i = entries[e]
            answers = parts[p].answers
            if len(one) == 2:
                answers.fail(i, one[1])
                continue
            _, chunk, row = one
            answers.answer(i, chunk, row)
            answered.append(key)
            count = int(chunk.applied[row])
            if count:
                applied[chunk.model.name] += count
                announce.append((key, chunk, row))
                scored.setdefault(id(chunk), (chunk, []))[1].append(row)
            if row in chunk.skipped:
                skipped[chunk.model.name] += len(chunk.skipped[row])
        for model, count in applied.items():
            self.metrics.observations.labels(model).inc(count)
        for model, count in skipped.items():
            self.metrics.duplicates.labels(model).inc(count)
        for chunk, rows in scored.values():
            self.live.add(chunk, np.array(rows, dtype=np.int64))
        self._touch(answered)
        return announce

    def _settle(self, batch: list[Pending[Part, Answers]]) -> None:
        """Give every finished part its answers; put the others back, first in the queue."""
        retry: list[Pending[Part, Answers]] = []
        for pending in batch:
            part = pending.item
            if pending.future.done():  # its submitter is gone (cancelled)
                continue
            if part.answers.left == 0:
                pending.future.set_result(part.answers)
                continue
            answers = part.answers
            left = [i for i in part.items if answers.located(i) is None and not answers.error(i)]
            if pending.attempts + 1 >= self._cas_retries:
                for i in left:
                    stream_id = part.readings.stream_ids[i]
                    part.answers.fail(i, too_fast(stream_id))
                pending.future.set_result(part.answers)
                continue
            pending.item = Part(part.readings, part.answers, left, part.hints)
            retry.append(pending)
        if retry:
            self._batcher.retry_first(retry)


def merge(
    parts: list[Part], owners: list[tuple[int, int]]
) -> tuple[list[Readings], list[tuple[int, int]]]:
    """The batch's readings as few ``Readings`` as there are shapes (width, timedness, required
    model), so a round plans each group once however many requests it came in; and each
    entry's place in them (batch order kept: it is each stream's order)."""
    by_shape: dict[tuple[int, bool, tuple[str, int | None] | None], list[int]] = {}
    for e, (p, _) in enumerate(owners):
        r = parts[p].readings
        by_shape.setdefault((r.width, r.timed, r.require), []).append(e)
    sources: list[Readings] = []
    entries: list[tuple[int, int]] = [(0, 0)] * len(owners)
    for chosen in by_shape.values():
        first = owners[chosen[0]][0]
        if all(owners[e][0] == first for e in chosen):  # one request: its own readings
            for e in chosen:
                entries[e] = (len(sources), owners[e][1])
            sources.append(parts[first].readings)
            continue
        pieces = [(parts[owners[e][0]].readings, owners[e][1]) for e in chosen]
        starts = [int(r.bounds[i]) for r, i in pieces]
        ends = [int(r.bounds[i + 1]) for r, i in pieces]
        bounds = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum([b - a for a, b in zip(starts, ends, strict=True)], out=bounds[1:])
        head = pieces[0][0]
        merged = Readings(
            stream_ids=[r.stream_ids[i] for r, i in pieces],
            bounds=bounds,
            timestamps=np.concatenate(
                [r.timestamps[a:b] for (r, _), a, b in zip(pieces, starts, ends, strict=True)]
            ),
            values=np.concatenate(
                [r.values[a:b] for (r, _), a, b in zip(pieces, starts, ends, strict=True)]
            ),
            timed=head.timed,
            require=head.require,
            keys=[r.keys[i] for r, i in pieces],
        )
        for j, e in enumerate(chosen):
            entries[e] = (len(sources), j)
        sources.append(merged)
    return sources, entries


def too_fast(stream_id: str) -> Conflict:
    return Conflict(
        f"stream {stream_id!r} is being written too fast from elsewhere; retry",
        field="stream_id",
    )


__all__ = ["Engine", "IntArray", "Part", "Policies", "part_size"]
