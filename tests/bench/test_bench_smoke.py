"""The benchmark harness end to end in quick mode, so it cannot rot unnoticed.

Not a performance test: the figures of a quick run on a shared machine mean nothing; what is
checked is that every phase ran against the real service, Redis and MLServer (the peer), that
the no-lost-update checks hold, and that both result files are written and agree. wrk is
installed from Debian's packages when missing, as the deployment tests install nginx.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench import mlserver_peer
from tests.support.debian import ensure_tool
from tests.support.redis_server import redis_available
from tests.support.service_process import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not redis_available(), reason="needs redis-server"),
]


def test_quick_benchmark_writes_consistent_results(tmp_path: Path) -> None:
    wrk, reason = ensure_tool("wrk", "wrk")
    if wrk is None:
        pytest.skip(reason)
    assert mlserver_peer.available(), "the peer needs MLServer: pip install -e '.[bench]'"
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    markdown = (tmp_path / "results.md").read_text()

    rest = results["rest_single"]
    assert rest["service"]["requests_per_s"] > 0
    assert rest["bare_litestar"]["requests_per_s"] > 0
    assert rest["check"]["ok"], rest["check"]
    assert results["rest_window"]["non_2xx"] == 0
    assert results["rest_window"]["window_service"]["requests_per_s"] > 0
    peer = results["peer"]
    assert peer["non_2xx"] == 0
    assert peer["window"]["requests_per_s"] > 0
    assert peer["windows"]["requests_per_s"] > 0
    assert peer["rest_vs_window"] > 0

    ingest = results["ingest"]
    assert ingest["raw_onnxruntime"]["rows_per_s"] > 0
    for variant in ("warm", "cold"):
        assert ingest["floor"][variant]["floor_us_per_stream"] > 0
    assert ingest["floor"]["warm"]["us_per_stream"]["get_many"] == 0
    for path in ("bulk", "websocket", "bulk_full"):
        assert ingest[path]["stream_updates"] > 0
        assert ingest[path]["all_streams_ok"], ingest[path]
    assert ingest["counters_delta"]["skipped"] == 0
    # Scoring on and off side by side: both sides ran, every stream answered and applied.
    scored = results["scoring"]
    assert scored["on_updates_per_s"] > 0
    assert scored["off_updates_per_s"] > 0
    assert scored["all_streams_ok"], scored
    assert "Scoring on and off" in markdown

    memory = results["memory"]
    # One key per stream, and the tenant's stream-count quota (FORECAST_MAX_STREAMS_PER_TENANT).
    assert memory["redis_keys_added"] == memory["settings"]["streams"] + 1
    assert memory["observe_once"]["applied_streams"] == memory["settings"]["streams"]
    assert memory["redis_bytes_per_stream"] > 0
    assert memory["service_rss_kib_after"] > 0

    for figure in (f"{rest['ratio']:g}", f"{memory['redis_bytes_per_stream']:,}"):
        assert figure in markdown
    assert len(results["targets"]) == 7
    assert all(row["figure"] is not None for row in results["targets"])
    assert results["machine"]["cores"]
    assert results["machine"]["onnxruntime"]
