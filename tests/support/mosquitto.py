"""A real ``mosquitto`` broker for tests, on a free loopback port with its own directory.

Debian's package (``/usr/sbin/mosquitto``), installed on demand the way the deployment
tests install their tools. ``stop()`` then ``start()`` brings the broker back on the same
port, as a broker coming back after an outage would.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.support.debian import ensure_tool
from tests.support.process import ServerProcess, accepts_connections, stop_process
from tests.support.redis_server import free_port


def mosquitto_binary() -> tuple[str | None, str]:
    """The broker's path, or None and why it cannot be had."""
    return ensure_tool("mosquitto", "mosquitto")


class Mosquitto(ServerProcess):
    """One broker process: anonymous clients, no persistence, logging to its directory."""

    name = "mosquitto"
    start_timeout = 10.0
    poll_interval = 0.02

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="mosquitto-test-"))
        self.config = self.directory / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            f"log_dest file {self.directory / 'mosquitto.log'}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _launch(self) -> subprocess.Popen[Any]:
        self._process = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self._process

    def _ready(self) -> bool:
        return accepts_connections(self.port)

    def stop(self) -> None:
        """Stop the broker (an outage); ``start()`` brings it back on the same port."""
        stop_process(self._process)
        self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
