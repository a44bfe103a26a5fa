"""nginx as the load balancer of tests, running the repository's own site config.

``deploy/nginx/forecast.conf`` is used as it is, except for what differs between Docker and
a test process: the upstream servers (compose's ``forecast:8000`` becomes the replicas' local
ports) and the listen address. nginx runs in the foreground as a child of the test, with its
own prefix, pid file, logs and temp directories, so it needs no root paths and never meets
another nginx on the machine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO

from tests.support.process import ServerProcess, accepts_connections, stop_process
from tests.support.redis_server import free_port

_UPSTREAM_BLOCK = re.compile(r"(upstream\s+\S+\s*\{)(?P<body>[^}]*)(\})")
_SERVER_LINE = re.compile(r"^(?P<indent>[ \t]*)server\s+\S+(?P<params>[^;]*);", re.MULTILINE)
_LISTEN_LINE = re.compile(r"^(?P<indent>[ \t]*)listen\s+[^;]+;", re.MULTILINE)
_ACCESS_LOG_PATH = re.compile(r"^(?P<head>[ \t]*access_log\s+)(?P<path>[^\s;]+)", re.MULTILINE)


def render_site(text: str, upstreams: list[str], port: int, access_log: Path | None = None) -> str:
    """The site config with its one upstream server line repeated per address in ``upstreams``
    (keeping that line's parameters), its one ``listen`` on ``127.0.0.1:port`` and, with
    ``access_log``, every access log written to that file (in the format the site names).

    Anything else in the file is kept byte for byte; a file the template does not fit (no or
    several upstream blocks, server or listen lines) is an error, not a silent mismatch.
    """
    if not upstreams:
        raise ValueError("at least one upstream address is needed")
    blocks = list(_UPSTREAM_BLOCK.finditer(text))
    if len(blocks) != 1:
        raise ValueError(f"expected one upstream block, found {len(blocks)}")
    block = blocks[0]
    servers = list(_SERVER_LINE.finditer(block["body"]))
    if len(servers) != 1:
        raise ValueError(f"expected one server line in the upstream block, found {len(servers)}")
    line = servers[0]
    replicas = "\n".join(
        f"{line['indent']}server {address}{line['params']};" for address in upstreams
    )
    body = block["body"][: line.start()] + replicas + block["body"][line.end() :]
    text = text[: block.start("body")] + body + text[block.end("body") :]
    listens = list(_LISTEN_LINE.finditer(text))
    if len(listens) != 1:
        raise ValueError(f"expected one listen line, found {len(listens)}")
    listen = listens[0]
    text = (
        text[: listen.start()]
        + f"{listen['indent']}listen 127.0.0.1:{port};"
        + text[listen.end() :]
    )
    if access_log is not None:
        text = _ACCESS_LOG_PATH.sub(lambda m: f"{m['head']}{access_log}", text)
    return text


def _main_config(directory: Path) -> str:
    """The nginx.conf around the site: what the nginx image's own main config provides."""
    d = directory
    return f"""daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr notice;
events {{
    worker_connections 512;
}}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/temp/client_body;
    proxy_temp_path {d}/temp/proxy;
    fastcgi_temp_path {d}/temp/fastcgi;
    uwsgi_temp_path {d}/temp/uwsgi;
    scgi_temp_path {d}/temp/scgi;
    include {d}/site.conf;
}}
"""


class NginxBalancer(ServerProcess):
    """One nginx process in front of ``upstreams`` with the repository's site config."""

    name = "nginx"
    start_timeout = 10.0
    poll_interval = 0.02

    def __init__(
        self, binary: str, site_config: Path, upstreams: list[str], *, port: int | None = None
    ) -> None:
        self.binary = binary
        self.site_config = site_config
        self.upstreams = list(upstreams)
        self.port = port if port is not None else free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="nginx-test-"))
        # nginx started as root drops its workers to "nobody", who must reach the temp dirs.
        self.directory.chmod(0o755)
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log_path(self) -> Path:
        return self.directory / "access.log"

    def access_log(self) -> str:
        """What nginx wrote to its access log so far (the site's format)."""
        path = self.access_log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def error_log(self) -> str:
        """What nginx logged (errors and notices), for a failing test's message."""
        path = self.directory / "stderr.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _launch(self) -> subprocess.Popen[bytes]:
        (self.directory / "temp").mkdir(exist_ok=True)
        (self.directory / "site.conf").write_text(
            render_site(
                self.site_config.read_text(), self.upstreams, self.port, self.access_log_path
            )
        )
        config = self.directory / "nginx.conf"
        config.write_text(_main_config(self.directory))
        check = subprocess.run(
            [self.binary, "-t", "-q", "-p", str(self.directory), "-c", str(config), "-e", "stderr"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if check.returncode != 0:
            raise RuntimeError(f"nginx rejected the config: {check.stderr.strip()}")
        self._stderr = (self.directory / "stderr.log").open("wb")
        self._process = subprocess.Popen(
            [self.binary, "-p", str(self.directory), "-c", str(config), "-e", "stderr"],
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        return self._process

    def _ready(self) -> bool:
        return accepts_connections(self.port)

    def stop(self) -> None:
        """Fast shutdown (SIGTERM), then SIGKILL if it lingers."""
        process, self._process = self._process, None
        stop_process(process)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
