"""Servers that tests start as child processes: wait until one is ready, stop it for good.

nginx, Prometheus, the service and the benchmark's bare app all need the same three things:
a start that waits for readiness but gives up at once if the process dies, a stop that asks
politely before it kills, and a context manager that cleans up after a start that failed.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar, Self

import httpx


def wait_until_ready(
    process: subprocess.Popen[Any],
    ready: Callable[[], bool],
    *,
    name: str,
    timeout: float,
    interval: float,
) -> None:
    """Poll ``ready`` until it holds; raise if ``process`` exits first or ``timeout`` passes.

    A process that is still running at the timeout is stopped before the error is raised, so
    a server that never came up does not outlive the test that started it.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} at start-up")
        if ready():
            return
        if time.monotonic() > deadline:
            stop_process(process)
            raise RuntimeError(f"{name} was not ready within {timeout:g} s")
        time.sleep(interval)


def stop_process(process: subprocess.Popen[Any] | None, *, grace: float = 10.0) -> None:
    """SIGTERM (a clean shutdown), then SIGKILL if the process is still there after ``grace``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def accepts_connections(port: int) -> bool:
    """Whether something accepts TCP connections on ``127.0.0.1:port``: a readiness probe."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def answers_ok(url: str) -> bool:
    """Whether ``GET url`` answers 200: a readiness probe."""
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=1.0).status_code == 200
    return False


class ServerProcess(ABC):
    """A server run as a child process: ``start`` waits until it is ready, ``close`` undoes all.

    A subclass says how to launch the process and how to tell that it is ready; ``start``
    does the waiting, and a start that fails half way (config rejected, the process died,
    never ready) closes what it had made before the error goes on, whether it was called
    directly or by entering the context manager. Leaving the context always closes.
    """

    #: The server's name in error messages.
    name: ClassVar[str]
    #: Seconds a start may take before it is given up.
    start_timeout: ClassVar[float]
    #: Seconds between two readiness probes.
    poll_interval: ClassVar[float]

    @abstractmethod
    def _launch(self) -> subprocess.Popen[Any]:
        """Write what the server needs and start its process, without waiting for it."""

    @abstractmethod
    def _ready(self) -> bool:
        """Whether the server answers yet."""

    @abstractmethod
    def close(self) -> None:
        """Stop the server and remove whatever it wrote."""

    def start(self) -> Self:
        """Launch the server and return once it is ready."""
        try:
            process = self._launch()
            wait_until_ready(
                process,
                self._ready,
                name=self.name,
                timeout=self.start_timeout,
                interval=self.poll_interval,
            )
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
