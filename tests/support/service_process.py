"""The real service as a separate process (``python -m service``) on a free port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from tests.support.process import answers_ok, wait_until_ready
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_SECONDS = 60.0


#: How the service is started unless a test says otherwise.
PYTHON_M_SERVICE = (sys.executable, "-m", "service")


#: FORECAST_GRPC_PORT for a ServiceProcess: a free port, chosen when it is made.
GRPC_PORT_AUTO = "auto"


class ServiceProcess:
    """``python -m service`` (or ``command``) with ``FORECAST_*`` settings; waits for
    ``/health/ready``."""

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        port: int | None = None,
        log: Path | None = None,
        command: tuple[str, ...] = PYTHON_M_SERVICE,
    ) -> None:
        self.command = command
        self.port = port if port is not None else free_port()
        self.env = {**(env or {})}
        #: The v2 gRPC port (FORECAST_GRPC_PORT), None when off. ``GRPC_PORT_AUTO`` there (as
        #: ``replica_env`` writes it) becomes a free port of this process's own, so replicas
        #: on one host do not fight over the deployment file's port.
        self.grpc_port: int | None = None
        grpc = self.env.get("FORECAST_GRPC_PORT", "0")
        if grpc == GRPC_PORT_AUTO:
            grpc = self.env["FORECAST_GRPC_PORT"] = str(free_port())
        if grpc != "0":
            self.grpc_port = int(grpc)
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
            list(self.command), cwd=ROOT, env=env, stdout=out, stderr=out
        )
        try:
            wait_until_ready(
                self.process,
                lambda: answers_ok(f"{self.url}/health/ready"),
                name="service",
                timeout=READY_TIMEOUT_SECONDS,
                interval=0.05,
            )
        except BaseException:
            self.stop()
            raise
        return self

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
