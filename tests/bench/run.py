"""The benchmark: ``python -m tests.bench [--quick] [--out DIR]``.

Starts a real ``redis-server`` and the real service (``python -m service``), plus a bare
Litestar endpoint served the same way, drives them from separate processes (``wrk`` with Lua
scripts for REST, ``tests.bench.loadgen`` for bulk and WebSocket), and writes ``results.md``
and ``results.json``. Every load loop is bounded in count and time, everything listens on
loopback only, and every process started here is stopped on the way out.

The machine the numbers come from has few cores shared by load generator and server, so each
comparison (service vs bare endpoint, stateful vs window) is measured side by side in the
same run, alternating, and reported as a ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis

from tests.support.process import answers_ok, stop_process, wait_until_ready
from tests.support.redis_server import RedisServer, free_port
from tests.support.service_process import ROOT, ServiceProcess

HERE = Path(__file__).resolve().parent
LUA_DIR = HERE / "lua"
MODEL = "taylor-lstm"
MODEL_DIR = ROOT / "models" / "repository" / MODEL / "1"
#: Each load run gets its own block of timestamps, so a later run never repeats an earlier one.
TIMESTAMP_BLOCK = 100_000_000
BASE_TIMESTAMP = 1_700_000_000

TARGET_REST_RATIO = 0.7
TARGET_WINDOW_RATIO = 5.0
TARGET_INGEST = 100_000.0


@dataclass(frozen=True)
class Plan:
    """Counts and durations of one run (full or quick)."""

    quick: bool
    seconds: float  # one measured REST load run
    ingest_seconds: float  # one measured bulk or WebSocket run (answers take seconds each)
    warmup_seconds: float
    reps: int  # alternating repetitions of the REST comparisons
    rest_streams: int
    rest_connections: int
    window: int
    ingest_streams: int
    streams_per_request: int
    bulk_concurrency: int
    ws_connections: int
    memory_streams: int
    ort_batch: int
    profile_seconds: float  # 0: no profile

    @classmethod
    def full(cls) -> Plan:
        return cls(
            quick=False,
            seconds=4.0,
            ingest_seconds=10.0,
            warmup_seconds=2.0,
            reps=4,
            rest_streams=1000,
            rest_connections=64,
            window=512,
            ingest_streams=10_000,
            streams_per_request=1000,
            bulk_concurrency=4,
            ws_connections=2,
            memory_streams=100_000,
            ort_batch=1024,
            profile_seconds=6.0,
        )

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(
            quick=True,
            seconds=1.0,
            ingest_seconds=1.0,
            warmup_seconds=0.5,
            reps=1,
            rest_streams=50,
            rest_connections=8,
            window=512,
            ingest_streams=400,
            streams_per_request=100,
            bulk_concurrency=2,
            ws_connections=2,
            memory_streams=500,
            ort_batch=1024,
            profile_seconds=0.0,
        )


class Bench:
    """Runs the phases and collects every figure with its settings."""

    def __init__(self, plan: Plan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self._block = 0
        self.results: dict[str, Any] = {}

    # -- helpers ---------------------------------------------------------------------------

    def next_base(self) -> int:
        self._block += 1
        return BASE_TIMESTAMP + self._block * TIMESTAMP_BLOCK

    def observe_args(self) -> list[str]:
        """``observe.lua``'s arguments for the ``r`` streams, on timestamps of their own."""
        return [str(self.plan.rest_streams), "r", str(self.next_base())]

    def load_args(
        self,
        prefix: str,
        streams: int,
        *,
        per_request: int,
        concurrency: int,
        seconds: float,
        rounds: int | None = None,
    ) -> list[str]:
        """``loadgen bulk`` or ``ws`` arguments: which streams, how many a request, how many
        requests at once, for how long (or how many ``rounds``), on timestamps of their own."""
        args = [
            "--prefix",
            prefix,
            "--streams",
            str(streams),
            "--per-request",
            str(per_request),
            "--concurrency",
            str(concurrency),
            "--seconds",
            str(seconds),
            "--base-ts",
            str(self.next_base()),
        ]
        return args if rounds is None else [*args, "--rounds", str(rounds)]

    def ingest_args(self, seconds: float, concurrency: int, detail: str) -> list[str]:
        """The ingest runs' load: every ``b`` stream, ``streams_per_request`` at a time, each
        answered in ``detail`` (``summary``: what a high-rate ingest client asks for)."""
        p = self.plan
        args = self.load_args(
            "b",
            p.ingest_streams,
            per_request=p.streams_per_request,
            concurrency=concurrency,
            seconds=seconds,
        )
        return [*args, "--detail", detail]

    def wrk(
        self, url: str, script: str, args: list[str], *, seconds: float, connections: int
    ) -> dict[str, Any]:
        """One ``wrk`` run (1 thread): requests/s, latency percentiles, error counts."""
        command = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA_DIR / script),
            url,
            "--",
            *args,
        ]
        env = {**os.environ, "BENCH_LUA_DIR": str(LUA_DIR)}
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, env=env, check=False
        )
        match = re.search(r"^BENCH_JSON (.*)$", done.stdout, re.MULTILINE)
        if done.returncode != 0 or match is None:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
        raw = json.loads(match.group(1))
        secs = raw["duration_us"] / 1e6
        errors = sum(v for k, v in raw.items() if k.startswith("errors_"))
        return {
            "requests": raw["requests"],
            "seconds": round(secs, 3),
            "requests_per_s": round(raw["requests"] / secs, 1),
            "p50_ms": raw["p50_us"] / 1000,
            "p90_ms": raw["p90_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000,
            "mean_ms": round(raw["mean_us"] / 1000, 3),
            "max_ms": raw["max_us"] / 1000,
            "errors": errors,
            "non_2xx": raw["errors_status"],
        }

    def loadgen(self, mode: str, url: str, *args: str, timeout: float) -> dict[str, Any]:
        """``tests.bench.loadgen`` in its own process; its one JSON line."""
        done = subprocess.run(
            [sys.executable, "-m", "tests.bench.loadgen", mode, "--url", url, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"loadgen {mode} failed: {done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    def create_streams(self, url: str, prefix: str, count: int) -> dict[str, Any]:
        out = self.loadgen(
            "create",
            url,
            "--prefix",
            prefix,
            "--count",
            str(count),
            "--model",
            MODEL,
            "--concurrency",
            "64",
            "--max-seconds",
            "400",
            timeout=460,
        )
        if not out["complete"]:
            raise RuntimeError(f"created only {out['ok_streams']} of {count} streams: {out}")
        return out

    # -- phases ----------------------------------------------------------------------------

    def rest(self, service: ServiceProcess, bare_url: str) -> None:
        """Measurements 1 and 2: single-observation REST vs bare endpoint vs window recompute."""
        p = self.plan
        self.results["stream_creation_rest"] = self.create_streams(service.url, "r", p.rest_streams)
        before = scrape_counters(service.url)
        window_args = [MODEL, str(p.window)]
        bare_args = [str(p.rest_streams), "r", str(BASE_TIMESTAMP)]
        c = p.rest_connections
        # Warm-up (not reported): JIT-free Python still warms caches, pools and the allocator.
        warm = p.warmup_seconds
        self.wrk(bare_url, "observe.lua", bare_args, seconds=warm, connections=c)
        observe_requests = self.wrk(
            service.url, "observe.lua", self.observe_args(), seconds=warm, connections=c
        )["requests"]
        self.wrk(service.url, "forecast.lua", window_args, seconds=warm, connections=c)
        bare, stateful, window = [], [], []
        for _ in range(p.reps):
            bare.append(
                self.wrk(bare_url, "observe.lua", bare_args, seconds=p.seconds, connections=c)
            )
            run = self.wrk(
                service.url, "observe.lua", self.observe_args(), seconds=p.seconds, connections=c
            )
            observe_requests += run["requests"]
            stateful.append(run)
            window.append(
                self.wrk(service.url, "forecast.lua", window_args, seconds=p.seconds, connections=c)
            )
        time.sleep(0.5)  # requests wrk gave up on at its deadline finish before the scrape
        after = scrape_counters(service.url)
        applied = after["applied"] - before["applied"]
        skipped = after["skipped"] - before["skipped"]
        settings = {
            "tool": "wrk, 1 thread",
            "connections": c,
            "seconds_per_run": p.seconds,
            "runs_alternating": p.reps,
            "streams": p.rest_streams,
            "observations_per_request": 1,
            "model": MODEL,
        }
        self.results["rest_single"] = {
            "settings": settings,
            "service": summarize(stateful),
            "bare_litestar": summarize(bare),
            "ratio": ratio(stateful, bare),
            "target": TARGET_REST_RATIO,
            "check": {
                "wrk_responses_incl_warmup": observe_requests,
                "observations_applied": applied,
                "observations_skipped": skipped,
                "non_2xx": sum(r["non_2xx"] for r in stateful),
                "ok": skipped == 0
                and applied >= observe_requests
                and not any(r["non_2xx"] for r in stateful),
            },
        }
        self.results["rest_window"] = {
            "settings": {
                **settings,
                "window_W": p.window,
                "endpoint": f"/v1/models/{MODEL}/forecast",
            },
            "window_service": summarize(window),
            "stateful_service": summarize(stateful),
            "ratio": ratio(stateful, window),
            "target": TARGET_WINDOW_RATIO,
            "non_2xx": sum(r["non_2xx"] for r in window),
        }

    def ort_rate(self) -> dict[str, Any]:
        """Raw onnxruntime: B-row, T=1 steps per second on the same model, in this process."""
        from service.runtime import load_runtime

        runtime = load_runtime(MODEL_DIR, providers="cpu")
        b = self.plan.ort_batch
        rng = np.random.default_rng(0)
        x = rng.standard_normal((b, 1, runtime.n_features)).astype(np.float32)
        state = runtime.initial_states(b)
        # Every reading's time, as the service passes it (only a graph that reads it gets it).
        now = np.full((b, 1), 1.8e9)
        for _ in range(20):
            runtime.run(x, state, now)
        calls, t0 = 0, time.perf_counter()
        deadline = t0 + (1.0 if self.plan.quick else 3.0)
        while time.perf_counter() < deadline and calls < 100_000:
            _, state = runtime.run(x, state, now)
            calls += 1
        elapsed = time.perf_counter() - t0
        one_x, one_state = x[:1], runtime.initial_states(1)
        singles, t1 = 0, time.perf_counter()
        while time.perf_counter() < t1 + 0.5 and singles < 100_000:
            runtime.run(one_x, one_state, now[:1])
            singles += 1
        single_s = (time.perf_counter() - t1) / singles
        runtime.close()
        return {
            "batch_rows": b,
            "T": 1,
            "calls": calls,
            "seconds": round(elapsed, 3),
            "call_ms": round(elapsed / calls * 1000, 3),
            "rows_per_s": round(calls * b / elapsed, 1),
            "single_row_call_us": round(single_s * 1e6, 1),
            "providers": runtime.providers,
            "intra_op_threads": "onnxruntime default (0)",
        }

    def ingest(self, service: ServiceProcess) -> None:
        """Measurement 3: bulk and WebSocket stream-updates/s next to raw onnxruntime."""
        p = self.plan
        self.results["stream_creation_ingest"] = self.create_streams(
            service.url, "b", p.ingest_streams
        )
        ort = self.ort_rate()
        before = scrape_counters(service.url)
        t = p.ingest_seconds + 120
        warm, secs = p.warmup_seconds, p.ingest_seconds
        args = self.ingest_args
        runs: dict[str, dict[str, Any]] = {}
        # The targets are measured as an ingest client would ask (summary answers); one
        # full-detail bulk run beside them shows what the whole per-step answer costs.
        for name, mode, concurrency, detail in (
            ("bulk", "bulk", p.bulk_concurrency, "summary"),
            ("websocket", "ws", p.ws_connections, "summary"),
            ("bulk_full", "bulk", p.bulk_concurrency, "full"),
        ):
            url = service.url
            self.loadgen(mode, url, *args(warm, concurrency, detail), timeout=t)
            runs[name] = self.loadgen(mode, url, *args(secs, concurrency, detail), timeout=t)
        after = scrape_counters(service.url)
        for run in runs.values():
            run["ratio_to_raw_onnxruntime"] = round(run["updates_per_s"] / ort["rows_per_s"], 4)
            run["all_streams_ok"] = run["ok_streams"] == run["stream_updates"] and (
                run["applied_streams"] == run["stream_updates"]
            )
        self.results["ingest"] = {
            "settings": {
                "streams": p.ingest_streams,
                "streams_per_request_or_message": p.streams_per_request,
                "observations_per_stream_per_request": 1,
                "bulk_concurrent_requests": p.bulk_concurrency,
                "ws_connections": p.ws_connections,
                "seconds_per_run": p.ingest_seconds,
                "answers_owed_at_the_deadline": "awaited and counted; the elapsed time covers them",
                "tool": "tests.bench.loadgen (asyncio, uvloop, own process)",
                "model": MODEL,
            },
            "raw_onnxruntime": ort,
            **runs,
            "target_updates_per_s": TARGET_INGEST,
            "counters_delta": {
                "applied": after["applied"] - before["applied"],
                "skipped": after["skipped"] - before["skipped"],
            },
        }

    def memory(self, service: ServiceProcess, store: RedisServer) -> None:
        """Measurement 4: Redis bytes per stream and service RSS at N streams."""
        p = self.plan
        client = redis.Redis(port=store.port, socket_timeout=30)
        try:
            client.flushall()
            time.sleep(0.2)
            rss_before = rss_kib(service)
            used_before = int(client.info("memory")["used_memory"])
            keys_before = int(client.dbsize())
            create = self.create_streams(service.url, "m", p.memory_streams)
            once = self.load_args(
                "m", p.memory_streams, per_request=1000, concurrency=4, seconds=400, rounds=1
            )
            observe = self.loadgen("bulk", service.url, *once, timeout=460)
            time.sleep(0.2)
            used_after = int(client.info("memory")["used_memory"])
            keys_after = int(client.dbsize())
            # A stream's key (the service's default prefix), not the tenant's stream-count quota.
            sample = next(client.scan_iter(match="fcst:s:*", count=1000), None)
            record_bytes = int(client.strlen(sample)) if sample is not None else None
            key_usage = client.memory_usage(sample) if sample is not None else None
        finally:
            client.close()
        rss_after = rss_kib(service)
        n = p.memory_streams
        self.results["memory"] = {
            "settings": {
                "streams": n,
                "model": MODEL,
                "created_by": "PUT /v1/streams/{id} from tests.bench.loadgen, 64 connections",
                "then": "one observation each via POST /v1/observations (1000 streams/request)",
            },
            "stream_creation": create,
            "observe_once": observe,
            "redis_keys_added": keys_after - keys_before,
            "redis_used_memory_before": used_before,
            "redis_used_memory_after": used_after,
            "redis_bytes_per_stream": round((used_after - used_before) / n, 1),
            "redis_value_bytes_sample": record_bytes,
            "redis_memory_usage_sample_key": key_usage,
            "service_rss_kib_before": rss_before,
            "service_rss_kib_after": rss_after,
            "service_rss_mib_after": round(rss_after / 1024, 1),
            "service_rss_bytes_per_stream": round((rss_after - rss_before) * 1024 / n, 1),
        }

    def profile(self, service: ServiceProcess) -> None:
        """py-spy samples of the server under REST and bulk load: where the time goes."""
        p = self.plan
        if p.profile_seconds <= 0:
            return
        if shutil.which("py-spy") is None:
            self.results["profile"] = {"skipped": "py-spy not installed (pip install py-spy)"}
            return
        assert service.process is not None
        pid = service.process.pid
        out: dict[str, Any] = {}
        loads: dict[str, Callable[[], dict[str, Any]]] = {
            "rest_single": lambda: self.wrk(
                service.url,
                "observe.lua",
                self.observe_args(),
                seconds=p.profile_seconds + 1,
                connections=p.rest_connections,
            ),
            "bulk": lambda: self.loadgen(
                "bulk",
                service.url,
                *self.ingest_args(p.profile_seconds + 1, p.bulk_concurrency, "summary"),
                timeout=p.profile_seconds + 120,
            ),
            "bulk_full": lambda: self.loadgen(
                "bulk",
                service.url,
                *self.ingest_args(p.profile_seconds + 1, p.bulk_concurrency, "full"),
                timeout=p.profile_seconds + 120,
            ),
        }
        for name, load in loads.items():
            raw = self.workdir / f"profile-{name}.txt"
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(int(p.profile_seconds)),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(raw),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                load()
                spy.wait(timeout=p.profile_seconds + 30)
            finally:
                if spy.poll() is None:
                    spy.kill()
                    spy.wait()
            out[name] = hot_spots(raw) if raw.exists() else {"skipped": "py-spy wrote nothing"}
        self.results["profile"] = out


# -- small pure helpers -----------------------------------------------------------------------


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean requests/s over alternating runs, with each run's figures kept."""
    return {
        "requests_per_s": round(statistics.fmean(r["requests_per_s"] for r in runs), 1),
        "p50_ms": round(statistics.fmean(r["p50_ms"] for r in runs), 3),
        "p99_ms": round(statistics.fmean(r["p99_ms"] for r in runs), 3),
        "runs": runs,
    }


def ratio(numerator: list[dict[str, Any]], denominator: list[dict[str, Any]]) -> float:
    """Median of the ratios of runs made back to back.

    Other work on the shared machine comes and goes within seconds; runs next to each other
    see about the same share of the cores, so their ratio is steadier than a ratio of means.
    """
    pairs = [
        a["requests_per_s"] / b["requests_per_s"]
        for a, b in zip(numerator, denominator, strict=True)
        if b["requests_per_s"]
    ]
    return round(statistics.median(pairs), 4) if pairs else float("nan")


def scrape_counters(url: str) -> dict[str, float]:
    """``forecast_observations_{applied,skipped}_total`` summed over models."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    totals = {"applied": 0.0, "skipped": 0.0}
    for line in text.splitlines():
        for name in totals:
            if line.startswith(f"forecast_observations_{name}_total"):
                totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


def rss_kib(service: ServiceProcess) -> int:
    assert service.process is not None
    status = Path(f"/proc/{service.process.pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else -1


def hot_spots(raw: Path, top: int = 12) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [shorten(f) for f in stack.split(";") if not f.startswith("process ")]
        frames = [f for f in frames if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": f, "percent": round(100 * c / total, 1)}
            for f, c in counter.most_common(top)
        ]

    # Inclusive shares of the service's own functions: the roots (event loop, uvicorn,
    # middleware) contain everything and say nothing about where to cut.
    ours = Counter({f: c for f, c in inclusive.items() if "(service/" in f and "__main__" not in f})
    return {"samples": total, "self": share(own), "inclusive": share(ours)}


def shorten(frame: str) -> str:
    """``func (path/to/file.py:12)`` to ``func (package/file.py)``: line numbers vary."""
    match = re.match(r"^(.*?) \((.*?)(?::\d+)?\)$", frame.strip())
    if match is None:
        return frame.strip()
    func, path = match.groups()
    parts = Path(path).parts
    for anchor in ("site-packages", "main", "lib"):
        if anchor in parts:
            parts = parts[len(parts) - parts[::-1].index(anchor) :]
            break
    return f"{func} ({'/'.join(parts[-3:])})"


def machine() -> dict[str, Any]:
    import onnxruntime
    import uvicorn

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        match = re.search(r"^MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text(), re.MULTILINE)
        mem_kib = int(match.group(1)) if match else 0
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "litestar": _dist("litestar"),
        "uvicorn": uvicorn.__version__,
        "redis_server": redis_version,
        "redis_py": redis.__version__,
        "wrk": (wrk_version.stdout + wrk_version.stderr).strip().splitlines()[0],
        "note": "client and server share these cores; other work on the machine adds noise",
    }


def _dist(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def ensure_wrk() -> None:
    """wrk from Debian's packages: installed here when missing and running as root."""
    if shutil.which("wrk") is not None:
        return
    if os.geteuid() != 0:
        raise SystemExit("wrk is missing: run `sudo apt-get install -y wrk` (Debian/Ubuntu)")
    print("installing wrk with apt-get ...", file=sys.stderr)
    install = ["apt-get", "install", "-y", "wrk"]
    null = subprocess.DEVNULL
    if subprocess.run(install, check=False, timeout=300, stdout=null, stderr=null).returncode:
        subprocess.run(["apt-get", "update"], check=True, timeout=300, stdout=null, stderr=null)
        subprocess.run(install, check=True, timeout=300, stdout=null, stderr=null)


@contextlib.contextmanager
def bare_server() -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.bare_app", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = partial(answers_ok, f"{url}/ready")
        wait_until_ready(process, ready, name="the bare app", timeout=30, interval=0.05)
        yield url
    finally:
        stop_process(process)


def service_settings(store_url: str) -> tuple[dict[str, str], dict[str, Any]]:
    """The environment the service gets, and the effective values of the settings that matter."""
    from service.settings import Settings

    env = {
        "FORECAST_STORE_URL": store_url,
        "FORECAST_PROVIDERS": "cpu",
        "FORECAST_LOG_LEVEL": "warning",
        "FORECAST_MODEL_REPOSITORY": str(ROOT / "models" / "repository"),
    }
    effective = Settings(store_url=store_url, providers="cpu", log_level="warning").model_dump(
        include={
            "providers",
            "batch_max_rows",
            "batch_max_delay_ms",
            "ws_max_in_flight",
            "inference_threads",
            "max_observations",
            "max_body_bytes",
            "cas_retries",
            "store_timeout_seconds",
        }
    )
    effective["server"] = "uvicorn, 1 worker, default loop/http (uvloop, httptools if installed)"
    effective["redis"] = "redis-server, loopback, --save '' --appendonly no"
    return env, effective


# -- report -----------------------------------------------------------------------------------


def verdict(got: float, target: float) -> str:
    if got >= target:
        return f"met ({got:g} ≥ {target:g})"
    return f"MISSED by {100 * (target - got) / target:.0f}% ({got:g} < {target:g})"


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    rest = results["rest_single"]
    win = results["rest_window"]
    ing = results["ingest"]
    mem = results["memory"]
    ort = ing["raw_onnxruntime"]
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `{results['command']}` on {results['finished_utc']} "
        f"({results['wall_seconds']:.0f} s). Quick mode: {results['quick']}.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in m.items()),
        "",
        f"Code: commit {results['code']['commit']}; uncommitted changes to served files at "
        f"the time: {', '.join(results['code']['uncommitted_service_files']) or 'none'}.",
        "",
        "Load average (1/5/15 min) of the shared machine around the phases: "
        + "; ".join(f"{k} {v}" for k, v in results["load_average_1_5_15_min"].items())
        + " (2 cores: anything above ~2 means other work competed with the benchmark).",
        "",
        "## Service settings",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in results["service_settings"].items()),
        "",
        "## Targets",
        "",
        "| measurement | figure | target | verdict |",
        "|---|---|---|---|",
        f"| 1. single-observation REST ÷ bare Litestar (req/s) | {rest['ratio']:g} | ≥ 0.7 | "
        f"{verdict(rest['ratio'], TARGET_REST_RATIO)} |",
        f"| 2. stateful ÷ window W={win['settings']['window_W']} (req/s) | {win['ratio']:g} | "
        f"≥ 5 | {verdict(win['ratio'], TARGET_WINDOW_RATIO)} |",
        "| 3a. bulk ingest (summary answers), stream-updates/s | "
        f"{ing['bulk']['updates_per_s']:,.0f} | "
        f"≥ 100,000 | {verdict(ing['bulk']['updates_per_s'], TARGET_INGEST)} |",
        "| 3b. WebSocket ingest (summary answers), stream-updates/s | "
        f"{ing['websocket']['updates_per_s']:,.0f} | "
        f"≥ 100,000 | {verdict(ing['websocket']['updates_per_s'], TARGET_INGEST)} |",
        "",
        "## 1. Single-observation REST updates vs a bare Litestar endpoint",
        "",
        _settings_line(rest["settings"]),
        "",
        "| server | requests/s | p50 ms | p99 ms | runs (req/s) |",
        "|---|---|---|---|---|",
        _rest_row("service `POST /v1/streams/{id}/observations`", rest["service"]),
        _rest_row("bare Litestar endpoint (tests/bench/bare_app.py)", rest["bare_litestar"]),
        "",
        f"Ratio service ÷ bare (median of back-to-back pairs): **{rest['ratio']:g}** "
        f"(target ≥ {TARGET_REST_RATIO}). "
        f"No update lost or skipped: {rest['check']['observations_applied']:.0f} observations "
        f"applied for {rest['check']['wrk_responses_incl_warmup']} completed responses "
        f"(warm-up included; requests cut off at wrk's deadline may add a few), "
        f"{rest['check']['observations_skipped']:.0f} skipped, "
        f"{rest['check']['non_2xx']} non-2xx → check "
        f"{'passed' if rest['check']['ok'] else 'FAILED'}.",
        "",
        f"## 2. Stateful updates vs window recompute (W = {win['settings']['window_W']})",
        "",
        _settings_line(win["settings"]),
        "",
        "| path | requests/s | p50 ms | p99 ms | runs (req/s) |",
        "|---|---|---|---|---|",
        _rest_row("stateful: one observation, one recurrent step", win["stateful_service"]),
        _rest_row(
            f"stateless: {win['settings']['window_W']} readings per request", win["window_service"]
        ),
        "",
        f"Ratio stateful ÷ window (median of back-to-back pairs): **{win['ratio']:g}** "
        f"(target ≥ {TARGET_WINDOW_RATIO}); "
        f"non-2xx on the window path: {win['non_2xx']}.",
        "",
        f"## 3. Bulk and WebSocket ingest over {ing['settings']['streams']:,} streams",
        "",
        _settings_line(ing["settings"]),
        "",
        f"Raw onnxruntime in the same run: `run()` with B = {ort['batch_rows']}, T = 1 takes "
        f"{ort['call_ms']} ms → **{ort['rows_per_s']:,.0f} rows/s** "
        f"(one row alone: {ort['single_row_call_us']} µs per call; {ort['providers']}).",
        "",
        "| path | stream-updates/s | requests or messages/s | p50 ms | p99 ms | "
        "response bytes per update | ratio to raw onnxruntime | every stream 200 + applied |",
        "|---|---|---|---|---|---|---|---|",
        _ingest_row('bulk `POST /v1/observations`, `"detail": "summary"`', ing["bulk"]),
        _ingest_row(
            'WebSocket `/v1/ws` `{"streams": [...], "detail": "summary"}`', ing["websocket"]
        ),
        *(
            [_ingest_row("bulk, full detail (every step and quantile; no target)", full)]
            if (full := ing.get("bulk_full"))
            else []
        ),
        "",
        f"Counters over these runs (warm-ups included): "
        f"{ing['counters_delta']['applied']:.0f} applied, "
        f"{ing['counters_delta']['skipped']:.0f} skipped.",
        "",
        f"## 4. Memory at {mem['settings']['streams']:,} streams",
        "",
        _settings_line(mem["settings"]),
        "",
        "| | |",
        "|---|---|",
        f"| Redis keys added | {mem['redis_keys_added']:,} |",
        f"| Redis used_memory before → after | {mem['redis_used_memory_before']:,} → "
        f"{mem['redis_used_memory_after']:,} bytes |",
        f"| **Redis bytes per stream** | **{mem['redis_bytes_per_stream']:,}** |",
        f"| one record's value (STRLEN) / MEMORY USAGE of its key | "
        f"{mem['redis_value_bytes_sample']} / {mem['redis_memory_usage_sample_key']} bytes |",
        f"| **service RSS** after | **{mem['service_rss_mib_after']} MiB** "
        f"({mem['service_rss_kib_before']:,} → {mem['service_rss_kib_after']:,} KiB) |",
        f"| service RSS growth per stream | {mem['service_rss_bytes_per_stream']} bytes |",
        f"| creating the streams (PUT) | {mem['stream_creation']['requests_per_s']:,} req/s |",
        f"| one observation each (bulk) | {mem['observe_once']['updates_per_s']:,} updates/s, "
        f"all applied: {mem['observe_once']['applied_streams'] == mem['settings']['streams']} |",
        "",
    ]
    profile = results.get("profile")
    if profile:
        lines += ["## Where the server's time goes (py-spy)", ""]
        for name, spots in profile.items():
            if "self" not in spots:
                lines += [f"{name}: {spots}", ""]
                continue
            lines += [
                f"**{name}** ({spots['samples']} samples at 200 Hz over the service process)",
                "",
                "| self % | function (all code) | | inclusive % | function (service/ only) |",
                "|---|---|---|---|---|",
            ]
            for own, inc in zip(spots["self"], spots["inclusive"], strict=False):
                lines.append(
                    f"| {own['percent']} | `{own['function']}` | | {inc['percent']} | "
                    f"`{inc['function']}` |"
                )
            lines.append("")
    analysis = HERE / "analysis.md"
    if analysis.exists() and not results["quick"]:
        lines += [analysis.read_text().rstrip(), ""]
    return "\n".join(lines)


def _settings_line(settings: dict[str, Any]) -> str:
    return "Settings: " + ", ".join(f"{k} = {v}" for k, v in settings.items()) + "."


def _rest_row(label: str, s: dict[str, Any]) -> str:
    runs = ", ".join(f"{r['requests_per_s']:,.0f}" for r in s["runs"])
    return f"| {label} | {s['requests_per_s']:,.0f} | {s['p50_ms']} | {s['p99_ms']} | {runs} |"


def _ingest_row(label: str, r: dict[str, Any]) -> str:
    return (
        f"| {label} | {r['updates_per_s']:,.0f} | {r['requests_per_s']:,.1f} | {r['p50_ms']} | "
        f"{r['p99_ms']} | {r['response_bytes_per_update']:,.0f} | "
        f"{r['ratio_to_raw_onnxruntime']:g} | {r['all_streams_ok']} |"
    )


# -- entry point ------------------------------------------------------------------------------


def run(plan: Plan, out_dir: Path, command: str) -> dict[str, Any]:
    ensure_wrk()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    bench = Bench(plan, workdir)
    try:
        with RedisServer() as store, bare_server() as bare_url:
            env, effective = service_settings(store.url)
            with ServiceProcess(env, log=workdir / "service.log") as service:
                bench.results["machine"] = machine()
                bench.results["service_settings"] = {**env, **effective}
                bench.results["code"] = code_version()
                load = bench.results["load_average_1_5_15_min"] = {"start": loadavg()}
                step("REST: service vs bare vs window")
                bench.rest(service, bare_url)
                load["after_rest"] = loadavg()
                step("ingest: bulk and WebSocket")
                bench.ingest(service)
                load["after_ingest"] = loadavg()
                step("profile")
                bench.profile(service)
                step(f"memory at {plan.memory_streams} streams")
                bench.memory(service, store)
                load["after_memory"] = loadavg()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = {
        "command": command,
        "quick": plan.quick,
        "finished_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_seconds": round(time.monotonic() - started, 1),
        "plan": plan.__dict__,
        **bench.results,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "results.md").write_text(render(results))
    return results


def code_version() -> dict[str, Any]:
    """The commit measured, and which served files differed from it (others edit meanwhile)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
        )
        return done.stdout.rstrip()

    changed = git("status", "--porcelain", "--", "service", "models/repository")
    return {
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "uncommitted_service_files": [line[3:] for line in changed.splitlines()],
    }


def loadavg() -> str:
    """The 1/5/15-minute load averages: how busy the shared machine was around a phase."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def step(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="seconds and small counts")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where results.md/json go (default: tests/bench, or a temp dir with --quick)",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite results.md from the results.json in --out (after editing analysis.md)",
    )
    args = parser.parse_args(argv)
    if args.render_only:
        where = args.out or HERE
        results = json.loads((where / "results.json").read_text())
        (where / "results.md").write_text(render(results))
        return
    plan = Plan.quick_plan() if args.quick else Plan.full()
    out = args.out
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="bench-quick-")) if args.quick else HERE
    command = "python -m tests.bench" + (" --quick" if args.quick else "")
    results = run(plan, out, command)
    print(f"wrote {out / 'results.md'} and results.json", file=sys.stderr)
    summary = {
        "rest_ratio": results["rest_single"]["ratio"],
        "window_ratio": results["rest_window"]["ratio"],
        "bulk_updates_per_s": results["ingest"]["bulk"]["updates_per_s"],
        "ws_updates_per_s": results["ingest"]["websocket"]["updates_per_s"],
        "redis_bytes_per_stream": results["memory"]["redis_bytes_per_stream"],
    }
    print(json.dumps(summary))
