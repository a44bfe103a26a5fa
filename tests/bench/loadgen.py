"""Asyncio load generator for the benchmark, run as its own process.

``python -m tests.bench.loadgen MODE --url ... [options]`` prints one JSON line (the
measurement) on stdout. Modes:

* ``create``: ``PUT /v1/streams/{prefix}{i}`` for ``count`` streams (bounded by count and time).
* ``bulk``: ``POST /v1/observations`` with ``per-request`` streams in each body.
* ``ws``: ``{"streams": [...]}`` messages over ``/v1/ws`` connections.

HTTP goes over a minimal keep-alive HTTP/1.1 client on asyncio streams rather than httpx: on a
2-core machine the client's CPU is taken from the server, so it must cost as little as
possible. Bodies are assembled from pre-encoded fragments, and answers are checked by counting
``"status":200`` and ``"applied":1`` in the raw bytes instead of parsing megabytes of JSON.

Per-stream order: the streams are cut into chunks, and a chunk is only sent again once its
previous answer came back, so each stream's timestamps arrive strictly increasing and nothing
is skipped as a duplicate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

#: Epoch seconds of the first observation; each round adds one model period.
BASE_TIMESTAMP = 1_700_000_000
PERIOD_SECONDS = 1800


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; requests go one at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, limit=1 << 24
        )

    async def request(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if self._reader is None or self._writer is None:
            await self.open()
        assert self._reader is not None
        assert self._writer is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self._writer.write(head + body)
        await self._writer.drain()
        header = await self._reader.readuntil(b"\r\n\r\n")
        lines = header.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        payload = await self._reader.readexactly(length) if length else b""
        return status, payload

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None


@dataclass
class Tally:
    """What one run saw: latencies and counts, checked against what was sent."""

    requests: int = 0
    stream_updates: int = 0
    ok_streams: int = 0
    applied_streams: int = 0
    bad_requests: int = 0
    response_bytes: int = 0
    latencies: list[float] = field(default_factory=list)

    def summary(self, elapsed: float, **settings: Any) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            **settings,
            "seconds": round(elapsed, 3),
            "requests": self.requests,
            "stream_updates": self.stream_updates,
            "ok_streams": self.ok_streams,
            "applied_streams": self.applied_streams,
            "bad_requests": self.bad_requests,
            "response_bytes_per_update": (
                round(self.response_bytes / self.stream_updates, 1) if self.stream_updates else 0
            ),
            "requests_per_s": round(self.requests / elapsed, 1) if elapsed else 0.0,
            "updates_per_s": round(self.stream_updates / elapsed, 1) if elapsed else 0.0,
            "p50_ms": round(_percentile(lat, 50) * 1000, 3) if lat else None,
            "p99_ms": round(_percentile(lat, 99) * 1000, 3) if lat else None,
            "mean_ms": round(statistics.fmean(lat) * 1000, 3) if lat else None,
        }


def _percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


class ChunkBodies:
    """Pre-encoded observation bodies for one chunk of streams; only the timestamp changes."""

    def __init__(self, prefix: str, ids: range, tag: int, detail: str = "full") -> None:
        self.size = len(ids)
        self.round = 0
        # '{"stream_id":"p12","observations":[{"timestamp":' + ts + ',"value":' + v + '}]}'
        self._heads = [
            f'{{"stream_id":"{prefix}{i}","observations":[{{"timestamp":'.encode() for i in ids
        ]
        self._values = [f',"value":{30000 + (i % 997)}.5}}]}}'.encode() for i in ids]
        self.tag = tag
        # The answer asked for: "summary" (seq, applied, medians) is what an ingest client uses.
        self._tail = b"]}" if detail == "full" else f'],"detail":"{detail}"}}'.encode()

    def body(self, base: int) -> bytes:
        ts = str(base + self.round * PERIOD_SECONDS).encode()
        self.round += 1
        items = b",".join(h + ts + v for h, v in zip(self._heads, self._values, strict=True))
        return b'{"streams":[' + items + self._tail

    def message(self, base: int) -> bytes:
        """A WebSocket message: the bulk body with the chunk's tag as the first item's id."""
        ts = str(base + self.round * PERIOD_SECONDS).encode()
        self.round += 1
        first = b'{"id":' + str(self.tag).encode() + b"," + self._heads[0][1:]
        heads = [first, *self._heads[1:]]
        items = b",".join(h + ts + v for h, v in zip(heads, self._values, strict=True))
        return b'{"streams":[' + items + self._tail


def _chunks(prefix: str, streams: int, per_request: int, detail: str) -> list[ChunkBodies]:
    return [
        ChunkBodies(prefix, range(start, min(start + per_request, streams)), tag, detail)
        for tag, start in enumerate(range(0, streams, per_request))
    ]


def _check(tally: Tally, payload: bytes, expected: int) -> None:
    ok = payload.count(b'"status":200')
    applied = payload.count(b'"applied":1,')
    tally.ok_streams += ok
    tally.applied_streams += applied
    tally.response_bytes += len(payload)
    if ok != expected:
        tally.bad_requests += 1


async def run_create(args: argparse.Namespace) -> dict[str, Any]:
    host, port = _host_port(args.url)
    body = json.dumps({"model": args.model}).encode()
    tally = Tally()
    next_id = 0
    deadline = time.monotonic() + args.max_seconds

    async def worker() -> None:
        nonlocal next_id
        conn = HttpConnection(host, port)
        try:
            while next_id < args.count and time.monotonic() < deadline:
                i = next_id
                next_id += 1
                t0 = time.perf_counter()
                status, _ = await conn.request("PUT", f"/v1/streams/{args.prefix}{i}", body)
                tally.latencies.append(time.perf_counter() - t0)
                tally.requests += 1
                if status in (200, 201):
                    tally.ok_streams += 1
                else:
                    tally.bad_requests += 1
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    elapsed = time.perf_counter() - t0
    out = tally.summary(elapsed, mode="create", count=args.count, concurrency=args.concurrency)
    out["complete"] = tally.ok_streams == args.count
    return out


async def run_bulk(args: argparse.Namespace) -> dict[str, Any]:
    host, port = _host_port(args.url)
    chunks = _chunks(args.prefix, args.streams, args.per_request, args.detail)
    tally = Tally()
    deadline = time.monotonic() + args.seconds
    budget = args.max_requests

    async def worker(mine: list[ChunkBodies]) -> None:
        nonlocal budget
        conn = HttpConnection(host, port)
        try:
            while mine and time.monotonic() < deadline:
                for chunk in mine:
                    if budget <= 0 or time.monotonic() >= deadline:
                        return
                    if args.rounds and chunk.round >= args.rounds:
                        continue
                    budget -= 1
                    body = chunk.body(args.base_ts)
                    t0 = time.perf_counter()
                    status, payload = await conn.request("POST", "/v1/observations", body)
                    tally.latencies.append(time.perf_counter() - t0)
                    tally.requests += 1
                    tally.stream_updates += chunk.size
                    if status != 200:
                        tally.bad_requests += 1
                        continue
                    _check(tally, payload, chunk.size)
                if args.rounds and all(c.round >= args.rounds for c in mine):
                    return
        finally:
            await conn.close()

    groups = [chunks[k :: args.concurrency] for k in range(args.concurrency)]
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(g) for g in groups if g))
    elapsed = time.perf_counter() - t0
    return tally.summary(
        elapsed,
        mode="bulk",
        detail=args.detail,
        streams=args.streams,
        streams_per_request=args.per_request,
        concurrency=args.concurrency,
    )


async def run_ws(args: argparse.Namespace) -> dict[str, Any]:
    import websockets

    chunks = _chunks(args.prefix, args.streams, args.per_request, args.detail)
    tally = Tally()
    deadline = time.monotonic() + args.seconds
    budget = args.max_requests
    ws_url = args.url.replace("http://", "ws://", 1) + "/v1/ws"

    async def connection(mine: list[ChunkBodies]) -> None:
        nonlocal budget
        by_tag = {c.tag: c for c in mine}
        sent_at: dict[int, float] = {}
        ready: asyncio.Queue[ChunkBodies] = asyncio.Queue()
        for chunk in mine:
            ready.put_nowait(chunk)
        # No compression: a high-rate client would not deflate megabytes per second either.
        async with websockets.connect(ws_url, max_size=1 << 26, compression=None) as sock:

            async def sender() -> None:
                nonlocal budget
                while time.monotonic() < deadline and budget > 0:
                    try:
                        chunk = await asyncio.wait_for(ready.get(), timeout=1.0)
                    except TimeoutError:
                        continue
                    if time.monotonic() >= deadline or budget <= 0:
                        return
                    budget -= 1
                    sent_at[chunk.tag] = time.perf_counter()
                    await sock.send(chunk.message(args.base_ts).decode())

            async def receiver() -> None:
                # After the deadline, answers still owed are awaited (bounded by the drain
                # time) and counted: the elapsed time covers them too.
                while sent_at or (time.monotonic() < deadline and budget > 0):
                    left = deadline + args.drain_seconds - time.monotonic()
                    try:
                        text = await asyncio.wait_for(sock.recv(), timeout=max(0.1, left))
                    except TimeoutError:
                        return
                    payload = text.encode() if isinstance(text, str) else text
                    head = payload[:64]
                    start = head.index(b'"id":') + 5
                    tag = int(head[start : head.index(b",", start)])
                    chunk = by_tag[tag]
                    tally.latencies.append(time.perf_counter() - sent_at.pop(tag))
                    tally.requests += 1
                    tally.stream_updates += chunk.size
                    _check(tally, payload, chunk.size)
                    ready.put_nowait(chunk)

            await asyncio.gather(sender(), receiver())

    groups = [chunks[k :: args.concurrency] for k in range(args.concurrency)]
    t0 = time.perf_counter()
    await asyncio.gather(*(connection(g) for g in groups if g))
    elapsed = time.perf_counter() - t0
    return tally.summary(
        elapsed,
        mode="ws",
        detail=args.detail,
        streams=args.streams,
        streams_per_message=args.per_request,
        connections=args.concurrency,
        in_flight_per_connection=max(1, len(chunks) // args.concurrency),
    )


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.loadgen")
    parser.add_argument("mode", choices=["create", "bulk", "ws"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", default="s")
    parser.add_argument("--model", default="taylor-lstm")
    parser.add_argument("--count", type=int, default=1000, help="create: streams to create")
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--per-request", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument(
        "--drain-seconds", type=float, default=60.0, help="ws: wait this long for owed answers"
    )
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=0, help="stop after N rounds (0: time)")
    parser.add_argument("--base-ts", type=int, default=BASE_TIMESTAMP)
    parser.add_argument(
        "--detail",
        choices=["full", "summary"],
        default="full",
        help="bulk/ws: the answer asked for per stream (the request's detail field)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    runner = {"create": run_create, "bulk": run_bulk, "ws": run_ws}[args.mode]
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(runner(args))
    else:
        result = uvloop.run(runner(args))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
