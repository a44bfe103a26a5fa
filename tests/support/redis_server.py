"""Real ``redis-server`` processes for tests, on free ports, each in its own directory.

A Redis that may run on 6379 belongs to someone else: these helpers never touch it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

#: How long a server may take to answer PING (loading an AOF included).
START_TIMEOUT_SECONDS = 10.0


def redis_available() -> bool:
    """Whether the binaries these helpers need are installed."""
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, with_bus_port: bool = False) -> int:
    """A port nobody listens on; with ``with_bus_port`` also port + 10000 (cluster bus)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if not with_bus_port:
            return port
        if port + 10000 <= 65535 and _port_is_free(port + 10000):
            return port
    raise RuntimeError("no free port pair found")


class ServerExited(RuntimeError):
    """The server process ended before it answered (a port taken meanwhile, most often)."""


def wait_until_ready(port: int, deadline: float, process: subprocess.Popen[bytes]) -> None:
    """Block until ``process`` answers PING on ``port`` (not LOADING, not refusing).

    The answer must come from ``process`` itself: if someone else's server took the port
    first, this raises ``ServerExited`` instead of handing out a stranger's server.
    """
    while True:
        if process.poll() is not None:
            raise ServerExited(f"redis-server on port {port} exited with {process.returncode}")
        try:
            with redis.Redis(port=port, socket_timeout=1.0, socket_connect_timeout=1.0) as client:
                if client.ping():
                    if int(client.info("server")["process_id"]) != process.pid:
                        raise ServerExited(f"port {port} is served by another process")
                    return
        except (redis.ConnectionError, redis.TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server on port {port} did not answer within the deadline")
        time.sleep(0.02)


class RedisServer:
    """One ``redis-server`` process on a free port with its own data directory.

    Persistence by snapshot is off (``--save ""``). With ``appendonly`` every write is in the
    AOF and fsynced before the reply (``appendfsync always``), so even a SIGKILL keeps the
    data, and ``restart()`` brings it back on the same port and directory.
    """

    def __init__(
        self,
        *,
        appendonly: bool = False,
        port: int | None = None,
        directory: Path | None = None,
        extra_args: tuple[str, ...] = (),
        with_bus_port: bool = False,
    ) -> None:
        self.appendonly = appendonly
        self._with_bus_port = with_bus_port
        # A port picked here may be taken by someone else before the server binds it; until
        # the server has run once, start() then moves to another one.
        self._may_move = port is None
        self.port = port if port is not None else free_port(with_bus_port=with_bus_port)
        self._owns_directory = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="redis-test-"))
        self._extra_args = extra_args
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            "redis.log",
            "--appendonly",
            "yes" if self.appendonly else "no",
        ]
        if self.appendonly:
            args += ["--appendfsync", "always"]
        return args + list(self._extra_args)

    def start(self) -> None:
        """Start the server and return once it answers PING."""
        if self.running:
            return
        for attempt in range(3):
            self._process = subprocess.Popen(
                self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                deadline = time.monotonic() + START_TIMEOUT_SECONDS
                wait_until_ready(self.port, deadline, self._process)
            except ServerExited:
                self.stop(kill=True)
                if not self._may_move or attempt == 2:
                    raise
                self.port = free_port(with_bus_port=self._with_bus_port)
            except BaseException:
                self.stop(kill=True)
                raise
            else:
                self._may_move = False
                return

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (a clean shutdown) or, with ``kill``, SIGKILL."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            if kill:
                process.kill()
            else:
                process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        else:
            process.wait()

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start again on the same port and directory (the AOF survives)."""
        self.stop(kill=kill)
        self.start()

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): it keeps its socket but answers nothing."""
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGCONT)

    def flushall(self) -> None:
        with redis.Redis(port=self.port, socket_timeout=5.0) as client:
            client.flushall()

    def close(self) -> None:
        """Stop the server (resuming it first if paused) and remove its directory."""
        if self._process is not None and self._process.poll() is None:
            self.resume()
        self.stop(kill=True)
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class RedisClusterServer:
    """A Redis Cluster of ``masters`` masters and no replicas, on free ports."""

    def __init__(self, masters: int = 3, *, appendonly: bool = False) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.directory = Path(tempfile.mkdtemp(prefix="redis-cluster-test-"))
        self.nodes: list[RedisServer] = []
        for index in range(masters):
            node_dir = self.directory / f"node-{index}"
            node_dir.mkdir()
            self.nodes.append(
                RedisServer(
                    appendonly=appendonly,
                    with_bus_port=True,
                    directory=node_dir,
                    extra_args=(
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "5000",
                    ),
                )
            )

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self) -> None:
        """Start every node, assign the slots, and wait until every node says cluster_state:ok."""
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                [
                    "redis-cli",
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{port}" for port in self.ports),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=60,
            )
            self._wait_until_ok(time.monotonic() + 30)
        except BaseException:
            self.close()
            raise

    def stop(self, *, kill: bool = False) -> None:
        """Stop every node; each keeps its directory (and its cluster configuration)."""
        for node in self.nodes:
            node.stop(kill=kill)

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start every node on the same ports; they rejoin as the same cluster."""
        self.stop(kill=kill)
        for node in self.nodes:
            node.start()
        self._wait_until_ok(time.monotonic() + 30)

    def _wait_until_ok(self, deadline: float) -> None:
        for port in self.ports:
            with redis.Redis(port=port, socket_timeout=1.0) as client:
                while True:
                    # redis-py parses the reply into a dict of strings.
                    info = client.execute_command("CLUSTER INFO")
                    if isinstance(info, dict) and info.get("cluster_state") == "ok":
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cluster node {port} is not ok: {info}")
                    time.sleep(0.05)

    def flushall(self) -> None:
        """Empty every master."""
        for node in self.nodes:
            node.flushall()

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisClusterServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
