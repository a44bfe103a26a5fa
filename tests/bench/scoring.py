"""Bulk ingest with scoring on and off, side by side in one run.

Two fresh service processes on the same Redis, one with scoring on and one with
``FORECAST_SCORING=off``, each with streams of its own (prefixes ``d`` and ``c``, as many
as the ingest phase's), take the same summary bulk load, alternating run by run (the first
side swapped each time), each run after a warm-up of its own. Both are fresh: the main
service has served every phase before this one (a bigger heap, a full record cache), which
alone made it look ~15% slower than a fresh process in an earlier version of this section. The
figure is the ratio of the medians (on ÷ off) and the overhead 1 - ratio; the target is an
overhead of at most 10%.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.service_process import ServiceProcess

if TYPE_CHECKING:
    from tests.bench.run import Bench

#: The most scoring may cost bulk ingest (a fraction of the updates/s without it).
TARGET_OVERHEAD = 0.10


def side_by_side(bench: Bench, env: dict[str, str], log: Path) -> None:
    """Alternating summary bulk runs with scoring on and off, each in a fresh process; the
    results under ``bench.results["scoring"]``."""
    p = bench.plan
    on_log, off_log = log.with_name(f"{log.stem}-on.log"), log.with_name(f"{log.stem}-off.log")
    with (
        ServiceProcess({**env, "FORECAST_SCORING": "on"}, log=on_log) as on_side,
        ServiceProcess({**env, "FORECAST_SCORING": "off"}, log=off_log) as off,
    ):
        bench.create_streams(on_side.url, "d", p.ingest_streams)
        bench.create_streams(off.url, "c", p.ingest_streams)
        runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
        t = p.ingest_seconds + 120
        sides = [("on", on_side.url, "d"), ("off", off.url, "c")]
        for rep in range(max(1, p.reps)):
            # Each side goes first every other time: the machine's drift favours neither.
            for mode, url, prefix in sides if rep % 2 == 0 else sides[::-1]:
                warm = bench.ingest_args(p.warmup_seconds, p.bulk_concurrency, "summary", prefix)
                bench.loadgen("bulk", url, *warm, timeout=t)
                load = bench.ingest_args(p.ingest_seconds, p.bulk_concurrency, "summary", prefix)
                runs[mode].append(bench.loadgen("bulk", url, *load, timeout=t))
    on = statistics.median(r["updates_per_s"] for r in runs["on"])
    off_rate = statistics.median(r["updates_per_s"] for r in runs["off"])
    ratio = round(on / off_rate, 4) if off_rate else None
    bench.results["scoring"] = {
        "settings": {
            "streams_each": p.ingest_streams,
            "streams_per_request": p.streams_per_request,
            "bulk_concurrent_requests": p.bulk_concurrency,
            "seconds_per_run": p.ingest_seconds,
            "runs_alternating": len(runs["on"]),
            "detail": "summary",
            "processes": "two fresh service processes, FORECAST_SCORING=on and off, same Redis",
        },
        "on": runs["on"],
        "off": runs["off"],
        "on_updates_per_s": on,
        "off_updates_per_s": off_rate,
        "on_vs_off": ratio,
        "overhead": None if ratio is None else round(1 - ratio, 4),
        "target_overhead": TARGET_OVERHEAD,
        "all_streams_ok": all(
            r["ok_streams"] == r["stream_updates"] == r["applied_streams"]
            for r in runs["on"] + runs["off"]
        ),
    }


def render(results: dict[str, Any]) -> list[str]:
    """The results.md lines of the side-by-side runs (none in results made before them)."""
    s = results.get("scoring")
    if s is None:
        return []
    overhead = s["overhead"]
    shown = "?" if overhead is None else f"{overhead:.1%}"
    met = overhead is not None and overhead <= s["target_overhead"]
    return [
        "### Scoring on and off (bulk summary ingest, side by side)",
        "",
        f"{s['settings']['runs_alternating']} alternating run(s) each, "
        f"{s['settings']['streams_each']:,} streams each, in two fresh service processes "
        "(`FORECAST_SCORING=on` and `off`) on the same Redis.",
        "",
        "| scoring | stream-updates/s (median) | runs | every stream 200 + applied |",
        "|---|---|---|---|",
        f"| on | {s['on_updates_per_s']:,.0f} | {_runs(s['on'])} | {s['all_streams_ok']} |",
        f"| off | {s['off_updates_per_s']:,.0f} | {_runs(s['off'])} | {s['all_streams_ok']} |",
        "",
        f"On ÷ off: **{s['on_vs_off']}**; scoring costs **{shown}** of bulk ingest "
        f"(target at most {s['target_overhead']:.0%}: {'met' if met else 'missed'}).",
        "",
    ]


def _runs(runs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['updates_per_s']:,.0f}" for r in runs)
