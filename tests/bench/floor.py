"""The in-process floor: what one update costs at least, with no HTTP and no batcher.

For ``streams`` streams of the served model, a plain loop runs exactly the store calls the
engine sends (``commit_many`` with the records' stamps; in the cold variant a
``get_many`` first, as for streams the cache does not hold) and one onnxruntime call for all
the streams, on the benchmark's own Redis. The new records are built with the engine's own
codec (``Streams``), timed apart: the floor is the store calls plus the model call.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np

from service.core.streams import Streams
from service.runtime import load_runtime
from service.state.keys import stream_key
from service.state.record import (
    StreamRecord,
    decode_block,
    encode_block,
    new_incarnation,
    stamp_of,
)
from service.state.redis import RedisStore

TTL = 3600.0
THREADS = 0


async def measure(
    url: str,
    model_dir: Path,
    *,
    streams: int = 1000,
    seconds: float = 3.0,
    variants: tuple[str, ...] = ("warm", "cold"),
) -> dict[str, Any]:
    runtime = load_runtime(model_dir, providers="cpu", threads=THREADS)
    store = RedisStore.from_url(url, timeout_seconds=10.0)
    keys = [stream_key("floor", "bench", f"f{i}") for i in range(streams)]
    try:
        first = StreamRecord(
            model=runtime.name,
            version=runtime.version,
            fingerprint=runtime.fingerprint,
            incarnation=new_incarnation(),
            seq=0,
            last_ts=1_700_000_000.0,
            state=runtime.initial_state,
        ).encode()
        await store.commit_many([(k, None, first) for k in keys], TTL)
        raws = await store.get_many(keys)
        assert all(raw is not None for raw in raws)
        records = [raw for raw in raws if raw is not None]
        rng = np.random.default_rng(0)
        x = (30_000 + 1000 * rng.standard_normal((streams, 1, runtime.n_features))).astype(
            np.float32
        )
        out: dict[str, Any] = {"streams": streams, "model": runtime.name}
        for variant in variants:
            spent = {"get_many": 0.0, "model": 0.0, "codec": 0.0, "commit_many": 0.0}
            rounds, started = 0, time.perf_counter()
            ts = 1_700_000_000.0
            while time.perf_counter() - started < seconds or rounds < 3:
                t0 = time.perf_counter()
                if variant == "cold":
                    fetched = await store.get_many(keys)
                    records = [r for r in fetched if r is not None]
                t1 = time.perf_counter()
                kind, block = decode_block(records)
                group = Streams.of_block(runtime, block, kind.layout, 48)
                t2 = time.perf_counter()
                ts += 1800.0
                times = np.full((streams, 1), ts)
                forecast, state = runtime.run(x, group.state, times)
                t3 = time.perf_counter()
                slots = np.arange(streams)
                ones = np.ones(streams, np.int64)
                group.apply(slots, ones, times[:, 0], x[:, 0], forecast, state)
                ((_, new),) = group.next_records(slots)
                values = encode_block(new)
                items = [
                    (k, stamp_of(old), v) for k, old, v in zip(keys, records, values, strict=True)
                ]
                t4 = time.perf_counter()
                outcomes = await store.commit_many(items, TTL)
                t5 = time.perf_counter()
                assert all(o is True for o in outcomes), "the floor's own writes must win"
                records = values
                rounds += 1
                spent["get_many"] += t1 - t0
                spent["codec"] += (t2 - t1) + (t4 - t3)
                spent["model"] += t3 - t2
                spent["commit_many"] += t5 - t4
            per = {k: round(v / rounds / streams * 1e6, 2) for k, v in spent.items()}
            floor = per["commit_many"] + per["model"] + per["get_many"]
            out[variant] = {
                "rounds": rounds,
                "us_per_stream": per,
                "floor_us_per_stream": round(floor, 2),
                "floor_updates_per_s": round(1e6 / floor, 1),
                "with_codec_us_per_stream": round(floor + per["codec"], 2),
            }
        return out
    finally:
        await store.close()
        runtime.close()


def run(url: str, model_dir: Path, **options: Any) -> dict[str, Any]:
    """``measure`` in an event loop of its own (the benchmark's process has none)."""
    return asyncio.run(measure(url, model_dir, **options))
