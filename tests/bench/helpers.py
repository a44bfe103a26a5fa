"""Helpers of the benchmark: the servers it starts beside the service, what it reads off
them and the machine, and the small statistics of its runs."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.bench import mlserver_peer
from tests.support.debian import ensure_tool
from tests.support.process import answers_ok, stop_process, wait_until_ready
from tests.support.redis_server import free_port
from tests.support.service_process import ROOT, ServiceProcess


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
    """wrk from Debian's packages, installed when missing (as the deployment tests do)."""
    found, reason = ensure_tool("wrk", "wrk")
    if found is None:
        raise SystemExit(f"the benchmark needs wrk: {reason}")


def server_stack() -> str:
    """What uvicorn runs on here (the service and the bare endpoint alike)."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"uvicorn {_dist('uvicorn')}, 1 worker, loop {loop}, http {http}"


@contextlib.contextmanager
def serving(
    process: subprocess.Popen[bytes], url: str, probe: str, name: str, timeout: float
) -> Iterator[str]:
    """``url`` once ``probe`` answers 200; the process stopped on the way out."""
    try:
        ready = partial(answers_ok, f"{url}{probe}")
        wait_until_ready(process, ready, name=name, timeout=timeout, interval=0.05)
        yield url
    finally:
        stop_process(process)


@contextlib.contextmanager
def bare_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.bare_app", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with serving(process, f"http://127.0.0.1:{port}", "/ready", "the bare app", 30) as url:
        yield url


def service_settings(store_url: str) -> tuple[dict[str, str], dict[str, Any]]:
    """The environment the service gets, and the effective values of the settings that matter."""
    from service.settings import Settings

    env = {
        "FORECAST_STORE_URL": store_url,
        "FORECAST_PROVIDERS": "cpu",
        "FORECAST_LOG_LEVEL": "warning",
        "FORECAST_MODEL_REPOSITORY": str(ROOT / "models" / "repository"),
        # 100 windows of 512 readings in one stateless request (the default allows 10,000).
        "FORECAST_MAX_OBSERVATIONS": "60000",
    }
    effective = Settings(
        store_url=store_url, providers="cpu", log_level="warning", max_observations=60_000
    ).model_dump(
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
    effective["server"] = server_stack()
    effective["redis"] = "redis-server, loopback, --save '' --appendonly no"
    return env, effective


# -- report -----------------------------------------------------------------------------------


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


@contextlib.contextmanager
def mlserver_server(model_dir: Path, name: str, log: Path) -> Iterator[str | None]:
    """The stateless peer (``tests.bench.mlserver_peer``) on a free port; None without the
    bench extra."""
    if not mlserver_peer.available():
        yield None
        return
    port = free_port()
    process = mlserver_peer.spawn(model_dir, name, port, ROOT, log)
    probe = f"/v2/models/{name}/ready"
    with serving(process, f"http://127.0.0.1:{port}", probe, "MLServer", 90) as url:
        yield url
