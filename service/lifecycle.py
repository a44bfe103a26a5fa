"""Model lifecycle at run time: reload, load and unload off the event loop, and polling.

The registry does the loading (new runtime created and checked before it is published, the
old one retired rather than closed under a running request); this module runs it in a worker
thread, one change at a time, keeps the ``forecast_model_info`` metric in step, and owns the
optional polling task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypeVar

from litestar import Litestar

from service.errors import ModelRefused
from service.metrics import Metrics
from service.registry import ModelRegistry, ReloadReport
from service.runtime import ModelRuntime

log = logging.getLogger(__name__)
T = TypeVar("T")


class ModelLifecycle:
    """Serialises the run-time changes of one registry and reports them in metrics."""

    def __init__(self, registry: ModelRegistry, metrics: Metrics | None = None) -> None:
        self.registry = registry
        self.metrics = metrics
        self._lock = asyncio.Lock()

    async def _run(self, change: Callable[[], T]) -> T:
        async with self._lock:
            try:
                return await asyncio.to_thread(change)
            finally:
                self._publish()

    async def reload(self) -> ReloadReport:
        """Re-scan the repository (see :meth:`ModelRegistry.reload`)."""
        return await self._run(self.registry.reload)

    async def load(self, name: str, version: int) -> ModelRuntime:
        return await self._run(lambda: self.registry.load_version(name, version))

    async def unload(self, name: str, version: int) -> ModelRuntime:
        return await self._run(lambda: self.registry.unload(name, version))

    def _publish(self) -> None:
        if self.metrics is None:
            return
        gauge = self.metrics.model_info
        gauge.clear()
        for runtime in self.registry.all():
            gauge.labels(
                runtime.name,
                str(runtime.version),
                runtime.manifest.kind,
                ",".join(runtime.providers),
            ).set(1)


async def poll_repository(lifecycle: ModelLifecycle, interval_seconds: float) -> None:
    """Re-scan every ``interval_seconds`` until cancelled; a failed scan is logged, not fatal."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await lifecycle.reload()
        except ModelRefused as exc:
            log.warning("model repository poll failed: %s", exc)
        except OSError as exc:
            log.warning("model repository poll failed: %s", exc)


def model_lifecycle(
    interval_seconds: float,
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """A lifespan that sets ``app.state.lifecycle`` and polls the repository (0: no polling).

    It must come after the lifespan that sets ``app.state.registry`` and ``app.state.metrics``.
    The polling task is kept and cancelled (and awaited) at shutdown.
    """

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        lifecycle = ModelLifecycle(app.state.registry, app.state.get("metrics"))
        app.state.lifecycle = lifecycle
        if interval_seconds <= 0:
            yield
            return
        task = asyncio.create_task(
            poll_repository(lifecycle, interval_seconds), name="model-repository-poll"
        )
        app.state.model_poll_task = task
        log.info("polling the model repository every %g s", interval_seconds)
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan


__all__ = ["ModelLifecycle", "model_lifecycle", "poll_repository"]
