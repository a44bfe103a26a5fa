"""The load balancer's site config passes WebSocket upgrades and server-sent events through.

The upstream here is a small raw-HTTP server in the test, not the service: what is under test
is nginx with ``deploy/nginx/forecast.conf``, and a hand-written upstream can observe exactly
what nginx forwards (the upgrade headers) and hold an event stream open until the client
proves it already received the first event, which only an unbuffered proxy allows.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.nginx import NginxBalancer, render_site
from tests.support.service_process import ROOT

NGINX_SITE = ROOT / "deploy" / "nginx" / "forecast.conf"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: How long the upstream holds the second event back waiting for the client's ack.
HOLD_SECONDS = 2.0


@dataclass
class Upstream:
    """Answers ``/events`` with two SSE events (the second only once the first was seen by
    the client) and a WebSocket upgrade with a byte echo; records what it was sent."""

    first_event_seen: asyncio.Event = field(default_factory=asyncio.Event)
    upgrade_headers: dict[str, str] = field(default_factory=dict)
    held_too_long: bool = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split()[1]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                if headers.get("upgrade", "").lower() == "websocket":
                    await self._websocket(headers, reader, writer)
                    return
                if path == "/events":
                    await self._events(writer)
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    await writer.drain()
        finally:
            writer.close()

    async def _events(self, writer: asyncio.StreamWriter) -> None:
        def chunk(data: bytes) -> bytes:
            return f"{len(data):x}\r\n".encode() + data + b"\r\n"

        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        writer.write(chunk(b"data: first\n\n"))
        await writer.drain()
        try:
            await asyncio.wait_for(self.first_event_seen.wait(), HOLD_SECONDS)
        except TimeoutError:
            self.held_too_long = True
        writer.write(chunk(b"data: second\n\n") + b"0\r\n\r\n")
        await writer.drain()

    async def _websocket(
        self, headers: dict[str, str], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.upgrade_headers = headers
        accept = base64.b64encode(
            hashlib.sha1((headers["sec-websocket-key"] + WS_GUID).encode()).digest()
        ).decode()
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        await writer.drain()
        while data := await reader.read(1024):
            writer.write(data[::-1])
            await writer.drain()


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, int]]:
    handler = Upstream()
    server = await asyncio.start_server(handler.handle, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        yield handler, port
    finally:
        server.close()
        await server.wait_closed()


def _balancer(binary: str, site: Path, port: int) -> NginxBalancer:
    return NginxBalancer(binary, site, [f"127.0.0.1:{port}"])


async def test_server_sent_events_are_not_buffered(
    nginx_binary: str, upstream: tuple[Upstream, int]
) -> None:
    handler, port = upstream
    with _balancer(nginx_binary, NGINX_SITE, port) as nginx:
        events: list[str] = []
        async with (
            httpx.AsyncClient(timeout=HOLD_SECONDS * 3) as http,
            http.stream("GET", f"{nginx.url}/events") as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    events.append(line.removeprefix("data: "))
                    handler.first_event_seen.set()
    assert events == ["first", "second"]
    assert not handler.held_too_long, "nginx held the first event back: the stream is buffered"


async def test_buffering_proxy_is_caught(
    nginx_binary: str, upstream: tuple[Upstream, int], tmp_path: Path
) -> None:
    """The check above can fail: the same site with response buffering on does fail it."""
    handler, port = upstream
    site = tmp_path / "buffered.conf"
    site.write_text(NGINX_SITE.read_text().replace("proxy_buffering off;", "proxy_buffering on;"))
    with _balancer(nginx_binary, site, port) as nginx:
        async with httpx.AsyncClient(timeout=HOLD_SECONDS * 3) as http:
            response = await http.get(f"{nginx.url}/events")
    assert response.text.count("data: ") == 2
    assert handler.held_too_long


async def test_websocket_upgrade_passes_through(
    nginx_binary: str, upstream: tuple[Upstream, int]
) -> None:
    handler, port = upstream
    with _balancer(nginx_binary, NGINX_SITE, port) as nginx:
        reader, writer = await asyncio.open_connection("127.0.0.1", nginx.port)
        try:
            key = base64.b64encode(b"0123456789abcdef").decode()
            writer.write(
                f"GET /v1/ws HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 101"), head
            writer.write(b"observation")
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(11), 5) == b"noitavresbo"
        finally:
            writer.close()
            await writer.wait_closed()
    assert handler.upgrade_headers["upgrade"] == "websocket"
    assert handler.upgrade_headers["connection"].lower() == "upgrade"


def test_site_template_keeps_everything_but_addresses() -> None:
    original = NGINX_SITE.read_text()
    rendered = render_site(original, ["127.0.0.1:1", "127.0.0.1:2"], 9999)
    assert rendered.count("server 127.0.0.1:") == 2
    assert "listen 127.0.0.1:9999;" in rendered
    assert "forecast:8000" not in rendered
    kept = [line for line in original.splitlines() if "forecast:8000" not in line]
    kept = [line for line in kept if not line.strip().startswith("listen")]
    assert all(line in rendered.splitlines() for line in kept)
    with pytest.raises(ValueError, match="upstream block"):
        render_site("server { listen 80; }", ["127.0.0.1:1"], 1)
