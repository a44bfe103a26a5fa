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
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import redis

from tests.bench import floor, scoring
from tests.bench.helpers import (
    bare_server,
    code_version,
    ensure_wrk,
    hot_spots,
    loadavg,
    machine,
    mlserver_server,
    ratio,
    rss_kib,
    scrape_counters,
    service_settings,
    step,
    summarize,
)
from tests.bench.report import render, targets
from tests.support.redis_server import RedisServer
from tests.support.service_process import ROOT, ServiceProcess

HERE = Path(__file__).resolve().parent
LUA_DIR = HERE / "lua"
REPOSITORY = ROOT / "models" / "repository"
#: The model every phase uses (one feature: the load scripts send ``value``).
PREFERRED_MODEL = "taylor-lstm"
#: Each load run gets its own block of timestamps, so a later run never repeats an earlier one.
TIMESTAMP_BLOCK = 100_000_000
BASE_TIMESTAMP = 1_700_000_000


@functools.cache
def bench_model() -> tuple[str, Path]:
    """The model the benchmark serves, from whatever models/repository ships: the preferred
    one if it is there, else the first one-feature model; its latest version's directory."""
    candidates = sorted(p for p in REPOSITORY.iterdir() if p.is_dir())
    for directory in sorted(candidates, key=lambda p: p.name != PREFERRED_MODEL):
        versions = sorted(
            (v for v in directory.iterdir() if v.name.isdigit()), key=lambda v: int(v.name)
        )
        if not versions:
            continue
        manifest = json.loads((versions[-1] / "model.json").read_text())
        if len(manifest["features"]) == 1:
            return str(manifest["name"]), versions[-1]
    raise SystemExit(f"no one-feature model in {REPOSITORY}")


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
    windows_per_request: int  # the bulk stateless rows: windows (series) per request
    floor_seconds: float

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
            windows_per_request=100,
            floor_seconds=3.0,
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
            windows_per_request=10,
            floor_seconds=0.5,
        )


class Bench:
    """Runs the phases and collects every figure with its settings."""

    def __init__(self, plan: Plan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self._block = 0
        self.results: dict[str, Any] = {}
        self.model, self.model_dir = bench_model()

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

    def ingest_args(
        self, seconds: float, concurrency: int, detail: str, prefix: str = "b"
    ) -> list[str]:
        """The ingest runs' load: every ``b`` stream, ``streams_per_request`` at a time, each
        answered in ``detail`` (``summary``: what a high-rate ingest client asks for)."""
        p = self.plan
        args = self.load_args(
            prefix,
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
            self.model,
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

    def rest(self, service: ServiceProcess, bare_url: str, peer_url: str | None) -> None:
        """Single-observation REST against the bare endpoint and the stateless peer, and the
        service's own stateless forecast (W readings) against the peer's window recompute,
        all alternating in one loop."""
        p = self.plan
        self.results["stream_creation_rest"] = self.create_streams(service.url, "r", p.rest_streams)
        before = scrape_counters(service.url)
        w, b = str(p.window), str(p.windows_per_request)
        bare_args = [str(p.rest_streams), "r", str(BASE_TIMESTAMP)]
        loads: dict[str, tuple[str, str, Callable[[], list[str]]]] = {
            "bare": (bare_url, "observe.lua", lambda: bare_args),
            "service": (service.url, "observe.lua", self.observe_args),
            "window_columns": (service.url, "forecast.lua", lambda: [self.model, w, "columns"]),
            "window_observations": (
                service.url, "forecast.lua", lambda: [self.model, w, "observations"]
            ),
            "windows_columns": (service.url, "forecast.lua", lambda: [self.model, w, "columns", b]),
        }  # fmt: skip
        if peer_url is not None:
            loads["mlserver_window"] = (peer_url, "mlserver.lua", lambda: [self.model, w, "1"])
            loads["mlserver_windows"] = (peer_url, "mlserver.lua", lambda: [self.model, w, b])
        c = p.rest_connections
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in loads}
        observe_requests = 0
        # Warm-up (not reported): caches, pools and the allocator of every server.
        for name, (url, script, args) in loads.items():
            warm = self.wrk(url, script, args(), seconds=p.warmup_seconds, connections=c)
            if name == "service":
                observe_requests += warm["requests"]
        for _ in range(p.reps):
            for name, (url, script, args) in loads.items():
                run = self.wrk(url, script, args(), seconds=p.seconds, connections=c)
                runs[name].append(run)
                if name == "service":
                    observe_requests += run["requests"]
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
            "model": self.model,
        }
        stateful = runs["service"]
        self.results["rest_single"] = {
            "settings": settings,
            "service": summarize(stateful),
            "bare_litestar": summarize(runs["bare"]),
            "ratio": ratio(stateful, runs["bare"]),
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
        window = runs["window_columns"]
        self.results["rest_window"] = {
            "settings": {
                **settings,
                "window_W": p.window,
                "windows_per_request": p.windows_per_request,
                "endpoint": f"/v1/models/{self.model}/forecast",
                "body": 'columns: {"series": [{"timestamps": [...W], "values": [...W]}]}',
            },
            "window_service": summarize(window),
            "window_observations": summarize(runs["window_observations"]),
            "windows_service": summarize(runs["windows_columns"]),
            "stateful_service": summarize(stateful),
            "ratio": ratio(stateful, window),
            "non_2xx": sum(
                r["non_2xx"]
                for name in ("window_columns", "window_observations", "windows_columns")
                for r in runs[name]
            ),
        }
        if peer_url is None:
            self.results["peer"] = {"skipped": "MLServer is not installed (the bench extra)"}
            return
        peer = runs["mlserver_window"]
        self.results["peer"] = {
            "settings": {
                "server": "MLServer 1.7.1, 1 process (parallel_workers 0), custom runtime "
                "tests/bench/mlserver_peer.py recomputing the window from the initial state",
                "model": self.model,
                "window_W": p.window,
                "input": f"x FP32 [1, {p.window}, 1] as JSON data (v2 REST)",
                "windows_per_request": p.windows_per_request,
            },
            "window": summarize(peer),
            "windows": summarize(runs["mlserver_windows"]),
            "non_2xx": sum(
                r["non_2xx"] for n in ("mlserver_window", "mlserver_windows") for r in runs[n]
            ),
            "rest_vs_window": ratio(stateful, peer),
            "stateless_vs_window": ratio(window, peer),
            "stateless_observations_vs_window": ratio(runs["window_observations"], peer),
            "windows_vs_windows": ratio(runs["windows_columns"], runs["mlserver_windows"]),
        }

    def ort_rate(self) -> dict[str, Any]:
        """Raw onnxruntime: B-row, T=1 steps per second on the same model, in this process."""
        from service.runtime import load_runtime

        runtime = load_runtime(self.model_dir, providers="cpu")
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

    def ingest(self, service: ServiceProcess, store_url: str) -> None:
        """Bulk and WebSocket stream-updates/s next to the in-process floor (the engine's own
        store calls and one model call for 1,000 streams, no HTTP) and raw onnxruntime."""
        p = self.plan
        self.results["stream_creation_ingest"] = self.create_streams(
            service.url, "b", p.ingest_streams
        )
        ort = self.ort_rate()
        step("in-process floor")
        low = floor.run(store_url, self.model_dir, streams=1000, seconds=p.floor_seconds)
        step("bulk and WebSocket over HTTP")
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
            # The floor again right before each run: the ratio is of neighbours in time.
            beside = floor.run(
                store_url, self.model_dir, streams=1000, seconds=p.floor_seconds, variants=("warm",)
            )
            runs[name] = self.loadgen(mode, url, *args(secs, concurrency, detail), timeout=t)
            runs[name]["floor_beside_us_per_stream"] = beside["warm"]["floor_us_per_stream"]
            runs[name]["floor_beside_updates_per_s"] = beside["warm"]["floor_updates_per_s"]
        after = scrape_counters(service.url)
        for run in runs.values():
            run["ratio_to_raw_onnxruntime"] = round(run["updates_per_s"] / ort["rows_per_s"], 4)
            run["ratio_to_floor"] = round(
                run["updates_per_s"] / low["warm"]["floor_updates_per_s"], 4
            )
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
                "model": self.model,
            },
            "raw_onnxruntime": ort,
            "floor": low,
            **runs,
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
                "model": self.model,
                "created_by": "PUT /v1/streams/{id} from tests.bench.loadgen, 64 connections",
                "then": "one observation each via POST /v1/observations (1000 streams/request)",
            },
            "stream_creation": create,
            "observe_once": observe,
            "redis_keys_added": keys_after - keys_before,
            "redis_used_memory_before": used_before,
            "redis_used_memory_after": used_after,
            "redis_bytes_per_stream": round((used_after - used_before) / n, 1),
            "model_state_size": json.loads((self.model_dir / "model.json").read_text())[
                "state_size"
            ],
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


# -- entry point ------------------------------------------------------------------------------


def run(plan: Plan, out_dir: Path, command: str) -> dict[str, Any]:
    ensure_wrk()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    bench = Bench(plan, workdir)
    try:
        peer_log = workdir / "mlserver.log"
        with (
            RedisServer() as store,
            bare_server() as bare_url,
            mlserver_server(bench.model_dir, bench.model, peer_log) as peer_url,
        ):
            env, effective = service_settings(store.url)
            with ServiceProcess(env, log=workdir / "service.log") as service:
                bench.results["machine"] = machine()
                bench.results["service_settings"] = {**env, **effective}
                bench.results["code"] = code_version()
                load = bench.results["load_average_1_5_15_min"] = {"start": loadavg()}
                step("REST: service vs bare endpoint vs MLServer; stateless vs MLServer")
                bench.rest(service, bare_url, peer_url)
                load["after_rest"] = loadavg()
                step("ingest: floor, bulk and WebSocket")
                bench.ingest(service, store.url)
                load["after_ingest"] = loadavg()
                step("bulk ingest with scoring on and off")
                scoring.side_by_side(bench, env, workdir / "service-scoring.log")
                load["after_scoring"] = loadavg()
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
    results["targets"] = targets(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "results.md").write_text(render(results))
    return results


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
    print(json.dumps({row["measurement"]: row["figure"] for row in results["targets"]}))
