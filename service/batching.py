"""Cross-request micro-batching: a FIFO queue drained by one worker task, and the pure
functions that merge waiting observations into model calls and split the results back.

The queue knows nothing about models or stores (``MicroBatcher``); the forecaster supplies
the function that processes one batch. The pure parts (``rounds``, ``group_rows``,
``fresh_start``) are tested alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from service import tracing
from service.errors import ModelNotReady

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K", bound=Hashable)


@dataclass(eq=False, slots=True)
class Pending(Generic[T, R]):
    """One submitted item, the future its submitter awaits, and how often it was retried."""

    item: T
    future: asyncio.Future[R]
    attempts: int = 0
    enqueued: float = field(default_factory=time.monotonic)
    #: The span it was submitted under (tracing on), which its batch's span links to.
    origin: tracing.Origin | None = None


class MicroBatcher(Generic[T, R]):
    """Items submitted while a batch is being processed form the next batch.

    One worker drains the queue, so batches run one after another and items keep their
    submission order across batches (what per-stream ordering relies on). ``max_delay``
    optionally holds a non-full batch open to let more items join; 0 sends what is waiting.
    """

    def __init__(
        self,
        process: Callable[[list[Pending[T, R]]], Awaitable[None]],
        *,
        max_items: int,
        max_delay: float = 0.0,
        name: str = "batcher",
    ) -> None:
        self._process = process
        self._max_items = max_items
        self._max_delay = max_delay
        self._name = name
        self._queue: deque[Pending[T, R]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        #: Items put back by ``retry_first`` while the current batch ran.
        self._requeued: set[int] = set()

    def __len__(self) -> int:
        return len(self._queue)

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue ``item``; the returned future resolves when its batch has been processed."""
        if self._closing:
            raise ModelNotReady("the service is shutting down; retry on another replica")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append(Pending(item, future, origin=tracing.origin()))
        self._ensure_worker()
        assert self._wakeup is not None
        self._wakeup.set()
        return future

    def retry_first(self, pending: Sequence[Pending[T, R]]) -> None:
        """Put items back at the head of the queue, in the given order, for the next batch."""
        for one in reversed(pending):
            one.attempts += 1
            self._queue.appendleft(one)
            self._requeued.add(id(one))
        if self._wakeup is not None:
            self._wakeup.set()

    def _ensure_worker(self) -> None:
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def _run(self) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        while not self._closing:
            await wakeup.wait()
            wakeup.clear()
            while self._queue and not self._closing:
                if self._max_delay > 0 and len(self._queue) < self._max_items:
                    deadline = self._queue[0].enqueued + self._max_delay
                    pause = deadline - time.monotonic()
                    if pause > 0:
                        await asyncio.sleep(pause)
                count = min(len(self._queue), self._max_items)
                batch = [self._queue.popleft() for _ in range(count)]
                self._requeued.clear()
                try:
                    origins = [one.origin for one in batch]
                    with tracing.batch_span(self._name, origins, {"batch.items": count}):
                        await self._process(batch)
                except asyncio.CancelledError:
                    _fail(batch, ModelNotReady("the service is shutting down"))
                    raise
                except Exception as exc:  # the safety net: no submitter waits forever
                    log.exception("%s: a batch of %d failed", self._name, len(batch))
                    _fail(batch, exc)
                self._answer_forgotten(batch)

    def _answer_forgotten(self, batch: Sequence[Pending[T, R]]) -> None:
        """Fail the items a processed batch neither answered nor put back: a bug, but one
        that must cost its submitters an error, never a request that waits forever."""
        forgotten = [
            one for one in batch if not one.future.done() and id(one) not in self._requeued
        ]
        if forgotten:
            log.error("%s: a batch left %d item(s) unanswered", self._name, len(forgotten))
            _fail(forgotten, RuntimeError("the batch processing this request left it unanswered"))

    async def aclose(self, grace_seconds: float = 5.0) -> None:
        """Stop the worker; items still queued fail rather than hang.

        The worker stops on a flag as well as by cancellation: a client library that
        swallows a cancellation (redis-py's connection handling has done so) must not leave
        shutdown waiting forever. A batch still running after ``grace_seconds`` is abandoned.
        """
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=grace_seconds)
            if not done:
                log.warning("%s: the worker did not stop in %.0f s", self._name, grace_seconds)
            elif not task.cancelled() and task.exception() is not None:
                log.error("%s: the worker failed", self._name, exc_info=task.exception())
        _fail(list(self._queue), ModelNotReady("the service is shutting down"))
        self._queue.clear()


def _fail(batch: Sequence[Pending[T, R]], exc: BaseException) -> None:
    for one in batch:
        if not one.future.done():
            one.future.set_exception(exc)


def rounds(keys: Sequence[K]) -> list[list[int]]:
    """Indices of ``keys`` in rounds: round r holds the r-th occurrence of every key.

    Within a round every key appears at most once, so its rows can share one model call;
    a key's later items run in later rounds, after its earlier ones, carrying the state.
    """
    seen: dict[K, int] = {}
    out: list[list[int]] = []
    for index, key in enumerate(keys):
        level = seen.get(key, 0)
        seen[key] = level + 1
        if level == len(out):
            out.append([])
        out[level].append(index)
    return out


def group_rows(groups: Sequence[tuple[K, int]]) -> dict[tuple[K, int], list[int]]:
    """Row indices by (model, time steps T): each group is one onnxruntime call."""
    out: dict[tuple[K, int], list[int]] = {}
    for index, group in enumerate(groups):
        out.setdefault(group, []).append(index)
    return out


def fresh_start(timestamps: npt.NDArray[np.float64], last_ts: float) -> int:
    """Index of the first observation newer than ``last_ts`` (timestamps strictly increase)."""
    return int(np.searchsorted(timestamps, last_ts, side="right"))
