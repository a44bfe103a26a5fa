"""The child-process helpers every server fixture relies on: a start that fails cleans up."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.process import ServerProcess, stop_process, wait_until_ready


def _python(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def test_a_process_that_dies_at_start_up_is_reported_with_its_exit_code() -> None:
    process = _python("raise SystemExit(3)")
    with pytest.raises(RuntimeError, match="toy exited with 3 at start-up"):
        wait_until_ready(process, lambda: False, name="toy", timeout=60.0, interval=0.01)


def test_a_process_never_ready_is_stopped_before_the_error() -> None:
    process = _python("import time; time.sleep(60)")
    try:
        with pytest.raises(RuntimeError, match=r"toy was not ready within 0\.2 s"):
            wait_until_ready(process, lambda: False, name="toy", timeout=0.2, interval=0.01)
        assert process.poll() is not None
    finally:
        stop_process(process)


def test_ready_returns_while_the_process_runs() -> None:
    process = _python("import time; time.sleep(60)")
    try:
        wait_until_ready(process, lambda: True, name="toy", timeout=60.0, interval=0.01)
        assert process.poll() is None
    finally:
        stop_process(process)
    assert process.returncode is not None


def test_stop_kills_a_process_that_ignores_sigterm() -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring', flush=True)\n"
        "time.sleep(60)"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert process.stdout is not None
    with process.stdout:
        assert process.stdout.readline() == b"ignoring\n"  # SIGTERM is ignored from here on
        stop_process(process, grace=0.2)
    assert process.returncode == -9


class Toy(ServerProcess):
    """A server whose process exits at once, or runs until stopped."""

    name = "toy"
    start_timeout = 60.0
    poll_interval = 0.01

    def __init__(self, code: str, *, ready: bool) -> None:
        self.code = code
        self.ready = ready
        self.process: subprocess.Popen[Any] | None = None
        self.closed = 0

    def _launch(self) -> subprocess.Popen[Any]:
        self.process = _python(self.code)
        return self.process

    def _ready(self) -> bool:
        return self.ready

    def close(self) -> None:
        stop_process(self.process)
        self.closed += 1


def enter(server: ServerProcess) -> None:
    with server:
        pytest.fail("entered a server that never started")


@pytest.mark.parametrize("start", [Toy.start, enter], ids=["start", "with"])
def test_a_failed_start_closes_the_server(start: Callable[[Toy], object]) -> None:
    toy = Toy("raise SystemExit(2)", ready=False)
    with pytest.raises(RuntimeError, match="exited with 2"):
        start(toy)
    assert toy.closed == 1


def test_leaving_the_context_closes_a_running_server() -> None:
    with Toy("import time; time.sleep(60)", ready=True) as toy:
        assert toy.process is not None
        assert toy.process.poll() is None
        assert toy.closed == 0
    assert toy.closed == 1
    assert toy.process.returncode is not None
