"""The real service as a separate process (``python -m service``) on a free port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import httpx

from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_SECONDS = 60.0


class ServiceProcess:
    """``python -m service`` with ``FORECAST_*`` settings; waits for ``/health/ready``."""

    def __init__(
        self, env: dict[str, str] | None = None, *, port: int | None = None, log: Path | None = None
    ) -> None:
        self.port = port if port is not None else free_port()
        self.env = {**(env or {})}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: BinaryIO | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        env = {
            **os.environ,
            "FORECAST_HOST": "127.0.0.1",
            "FORECAST_PORT": str(self.port),
            "FORECAST_PROVIDERS": "cpu",
            "FORECAST_LOG_LEVEL": "warning",
            **self.env,
        }
        out: BinaryIO | int = subprocess.DEVNULL
        if self.log is not None:
            self._log_file = out = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=ROOT, env=env, stdout=out, stderr=out
        )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited with {self.process.returncode} at start-up")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("service did not become ready in time")
            time.sleep(0.05)

    def stop(self, *, kill: bool = False) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> ServiceProcess:
        self.stop()
        return self.start()

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
