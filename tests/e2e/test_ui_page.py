"""The live page at ``/ui`` in headless Chromium, against the real service as a process.

The browser can reach 127.0.0.1 and nothing else, so every file the page draws with comes from
the service. A stream is fed over the API while the page is open: the page must redraw from
the server-sent events it follows with the key in a header (never in a URL), keep its key, be
refused with a wrong one, and show a model's held-out accuracy as its manifest records it.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from service.api.ui import STATIC
from tests.support.chromium import Traffic, offline_page
from tests.support.redis_server import RedisServer
from tests.support.service_process import ServiceProcess
from tests.support.ui_page import (
    KEYS,
    OTHER_TENANT_KEY,
    READ_KEY,
    TIMEOUT_MS,
    WRITE_KEY,
    bearer,
    daily_profile,
    model_with_accuracy,
    open_page,
)

pytestmark = pytest.mark.slow

T0 = 1_790_006_400.0  # midnight UTC
HISTORY = 96


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    env = {"FORECAST_API_KEYS": KEYS, "FORECAST_HISTORY_LENGTH": str(HISTORY)}
    with ServiceProcess(env) as running:
        yield running


@pytest.fixture(scope="module")
def model(service: ServiceProcess) -> dict[str, Any]:
    return model_with_accuracy(service.url, READ_KEY)


def make_stream(service: ServiceProcess, model: dict[str, Any], stream_id: str) -> list[Any]:
    readings = daily_profile(model, T0, HISTORY + 40)
    body = {"model": model["name"], "history": readings[: HISTORY + 20]}
    url = f"{service.url}/v1/streams/{quote(stream_id, safe='')}"
    r = httpx.put(url, json=body, headers=bearer(WRITE_KEY))
    assert r.status_code == 201, r.text
    return readings


def post(service: ServiceProcess, stream_id: str, reading: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(
        f"{service.url}/v1/streams/{quote(stream_id, safe='')}/observations",
        json={"observations": [reading]},
        headers=bearer(WRITE_KEY),
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def chart_state(page: Any) -> dict[str, str]:
    return dict(page.eval_on_selector("#chart", "e => ({...e.dataset})"))


#: Pixels of the chart's canvas in the median's blue and in the readings' ink.
COUNT_COLOURS = """c => {
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let blue = 0, ink = 0, band = 0;
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
    if (a > 200 && Math.abs(r - 29) < 30 && Math.abs(g - 78) < 30 && Math.abs(b - 216) < 30) blue++;
    if (a > 200 && r < 60 && g < 70 && b < 80) ink++;
    if (a > 10 && a < 200 && b > r + 40) band++;
  }
  return {blue, ink, band, image: c.toDataURL()};
}"""


#: Console errors the page causes knowingly: a 401 before a key is given, and the 404 of
#: ``GET /v1/streams`` on a service without that route.
KNOWN_CONSOLE = re.compile(r"Failed to load resource: .*status of (401|404)")


@dataclass
class Browsing:
    """A page in headless Chromium (loopback only) and what it did: console errors, every
    request with its headers."""

    page: Any
    traffic: Traffic
    allowed: re.Pattern[str] = KNOWN_CONSOLE
    errors: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else 0)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on(
            "request", lambda r: self.requests.append({"url": r.url, "headers": r.headers})
        )

    def check(self) -> None:
        """What holds for every page: no other host asked, no key in a URL, no error."""
        assert not self.traffic.foreign, f"the page asked other hosts: {self.traffic.foreign}"
        for key in (WRITE_KEY, READ_KEY, OTHER_TENANT_KEY):
            assert not [u for u in self.traffic.urls if key in u], "a key went into a URL"
        unexpected = [m for m in self.errors if not self.allowed.search(m)]
        assert not unexpected, unexpected


@contextlib.contextmanager
def browsing(also_allowed: str | None = None) -> Iterator[Browsing]:
    """A fresh browser; once the block is done, ``Browsing.check`` of what it did (console
    errors matching ``also_allowed`` are expected too)."""
    allowed = KNOWN_CONSOLE
    if also_allowed is not None:
        allowed = re.compile(f"{KNOWN_CONSOLE.pattern}|{also_allowed}")
    with offline_page() as (page, traffic):
        seen = Browsing(page, traffic, allowed)
        yield seen
    seen.check()


def test_vendored_uplot_is_the_release_the_readme_names() -> None:
    directory = STATIC / "uplot"
    readme = (directory / "README.md").read_text(encoding="utf-8")
    recorded = {n: d for d, n in re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.MULTILINE)}
    assert set(recorded) == {"LICENSE", "uPlot.iife.min.js", "uPlot.min.css"}
    for name, digest in recorded.items():
        assert hashlib.sha256((directory / name).read_bytes()).hexdigest() == digest, name
    assert "MIT" in (directory / "LICENSE").read_text(encoding="utf-8")


def test_the_page_draws_a_stream_and_redraws_on_each_new_reading(
    service: ServiceProcess, model: dict[str, Any], tmp_path: Path
) -> None:
    readings = make_stream(service, model, "pump-7")
    with browsing() as seen:
        page = seen.page
        open_page(page, service.url, "/streams/pump-7", WRITE_KEY)  # asks: keys are enforced
        page.wait_for_selector("#live[data-state=live]", timeout=TIMEOUT_MS)
        page.wait_for_selector("#chart canvas", timeout=TIMEOUT_MS)
        api = httpx.get(f"{service.url}/v1/streams/pump-7", headers=bearer(READ_KEY)).json()
        drawn = chart_state(page)
        assert drawn["seq"] == str(api["seq"]) == str(HISTORY + 20)
        assert drawn["readings"] == str(HISTORY)  # every reading the stream keeps
        assert drawn["steps"] == str(model["horizon"]) == str(len(api["forecast"]["steps"]))
        before = page.eval_on_selector("#chart canvas", COUNT_COLOURS)
        assert before["ink"] > 300, "the readings' line is not drawn"
        assert before["blue"] > 100, "the median is not drawn"
        assert before["band"] > 300, "the quantile band is not drawn"

        for k, reading in enumerate(readings[HISTORY + 20 : HISTORY + 23], start=1):
            answer = post(service, "pump-7", reading)
            seq = str(HISTORY + 20 + k)
            assert str(answer["seq"]) == seq
            page.wait_for_selector(f'#chart[data-seq="{seq}"]', timeout=TIMEOUT_MS)
            now = chart_state(page)
            assert now["lastReading"] == answer["last_timestamp"].replace("+00:00", "Z")
            assert now["readings"] == str(HISTORY)
            assert int(now["draws"]) > int(drawn["draws"])
            shown = page.locator(".steps tbody tr").count()
            assert shown == len(answer["forecast"]["steps"])
        after = page.eval_on_selector("#chart canvas", COUNT_COLOURS)
        assert after["image"] != before["image"], "the chart did not change"
        page.screenshot(path=str(tmp_path / "stream.png"), full_page=True)
    assert (tmp_path / "stream.png").stat().st_size > 20_000
    events = [r for r in seen.requests if r["url"].endswith("/v1/streams/pump-7/forecasts")]
    assert events, "the page did not follow the stream's events"
    assert all(r["headers"].get("authorization") == f"Bearer {WRITE_KEY}" for r in events)


def test_the_key_is_kept_refused_when_wrong_and_scoped_to_its_tenant(
    service: ServiceProcess, model: dict[str, Any]
) -> None:
    make_stream(service, model, "meter-1")
    with browsing() as seen:
        page = seen.page
        open_page(page, service.url, "/streams/meter-1", READ_KEY)
        page.wait_for_selector("#chart canvas", timeout=TIMEOUT_MS)
        assert page.is_hidden("#key-form")
        page.reload()  # kept in the browser: no question the second time
        page.wait_for_selector("#chart canvas", timeout=TIMEOUT_MS)
        assert page.is_hidden("#key-form")
        assert page.text_content("#key-state") == "key set"

        page.click("#key-button")
        page.click("#key-forget")
        page.wait_for_selector("#key-form:not([hidden])", timeout=TIMEOUT_MS)
        page.fill("#key-input", "not-a-key-this-service-knows")
        page.click("#key-form button[type=submit]")
        page.wait_for_selector("#banner:not([hidden])", timeout=TIMEOUT_MS)
        assert "does not accept this API key" in page.text_content("#banner")

        # Another tenant's key: the same id is a stream that does not exist.
        page.fill("#key-input", OTHER_TENANT_KEY)
        page.click("#key-form button[type=submit]")
        page.wait_for_selector("#error-detail", timeout=TIMEOUT_MS)
        assert "does not exist" in page.text_content("#error-detail")
        assert page.locator("#chart").count() == 0


def test_the_stream_list_and_the_create_form(
    service: ServiceProcess, model: dict[str, Any]
) -> None:
    # Any text is an id (a '/', a space, an umlaut): the page keeps it one path segment.
    opened = "plant/line 1 Kühlhaus"
    make_stream(service, model, opened)
    with browsing() as seen:
        page = seen.page
        open_page(page, service.url, "/", WRITE_KEY)
        page.wait_for_selector("#list-source", timeout=TIMEOUT_MS)
        # The service lists the tenant's streams (GET /v1/streams): the one made over REST
        # is there before this browser ever opened it.
        assert page.get_attribute("#list-source", "data-source") == "service"
        page.wait_for_selector("table.streams", timeout=TIMEOUT_MS)
        assert listed_row(page, opened) == [opened, model["name"], "116"]

        page.fill("#open-id", opened)
        page.click("#open-form button[type=submit]")
        page.wait_for_selector('#chart[data-seq="116"]', timeout=TIMEOUT_MS)

        page.goto(f"{service.url}/ui#/")
        page.wait_for_selector("table.streams", timeout=TIMEOUT_MS)
        assert listed_row(page, opened) == [opened, model["name"], "116"]

        page.fill("#create-id", "made-in-page")
        page.select_option("#create-model", model["name"])
        page.click("#create-form button[type=submit]")
        page.wait_for_selector('#chart[data-seq="0"]', timeout=TIMEOUT_MS)
        made = httpx.get(f"{service.url}/v1/streams/made-in-page", headers=bearer(READ_KEY))
        assert made.status_code == 200
        assert made.json()["model"]["name"] == model["name"]
        # The new stream's first reading draws its first forecast.
        post(service, "made-in-page", daily_profile(model, T0, 1)[0])
        page.wait_for_selector('#chart[data-seq="1"][data-steps]:not([data-steps="0"])')


def listed_row(page: Any, stream_id: str) -> list[str]:
    """The first three cells (id, model, seq) of the streams table's row of ``stream_id``."""
    for row in page.locator("table.streams tbody tr").all():
        cells = row.locator("td").all_text_contents()
        if cells and cells[0] == stream_id:
            return [str(c) for c in cells[:3]]
    raise AssertionError(f"{stream_id!r} is not in the streams table")


def best_method(accuracy: dict[str, dict[str, float]], metric: str) -> str:
    def score(method: str) -> float:
        values = accuracy[method]
        if metric.split("_")[0] == "coverage":  # variants are judged as their base metric
            return abs(values[metric] - values.get("coverage_nominal", values[metric]))
        return values[metric]

    return min((m for m in accuracy if metric in accuracy[m]), key=score)


def test_the_model_page_shows_held_out_accuracy_beside_the_baselines(
    service: ServiceProcess, model: dict[str, Any]
) -> None:
    accuracy = model["accuracy"]
    with browsing() as seen:
        page = seen.page
        open_page(page, service.url, f"/models/{model['name']}", READ_KEY)
        page.wait_for_selector("#accuracy", timeout=TIMEOUT_MS)
        methods = page.eval_on_selector_all(
            "#accuracy tbody tr", "rows => rows.map(r => r.dataset.method)"
        )
        cells = page.eval_on_selector_all(
            "#accuracy tbody td",
            """cells => cells.map(c => [c.closest('tr').dataset.method, c.dataset.metric,
                                        c.dataset.value, c.classList.contains('best')])""",
        )
        title = page.text_content("h1")
    assert methods[0] == "model"
    assert set(methods) == set(accuracy)
    assert len(methods) > 1, "the baselines are shown"
    for method, metric, value, best in cells:
        assert float(value) == pytest.approx(accuracy[method][metric], rel=1e-12)
        assert best == (best_method(accuracy, metric) == method), (method, metric)
    shown = {(m, k) for m, k, _, _ in cells}
    expected = {(m, k) for m in accuracy for k in accuracy[m] if k != "coverage_nominal"}
    assert shown == expected
    assert model["name"] in title
    assert f"v{model['version']}" in title


def test_readings_flagged_as_anomalies_are_marked(
    service: ServiceProcess, model: dict[str, Any]
) -> None:
    """Issue 14 adds an ``anomaly`` flag per reading; the page marks them already. The real
    answer is taken from the service and two of its readings flagged on the way."""
    make_stream(service, model, "flagged")

    def flag(route: Any) -> None:
        answer = route.fetch()
        if answer.status != 200:  # the first call, without a key: passed on as it is
            route.fulfill(response=answer)
            return
        body = answer.json()
        for reading in body.get("readings", []):
            reading["anomaly"] = False
        for reading in body.get("readings", [])[-3::2]:
            reading["anomaly"] = True
        route.fulfill(response=answer, json=body)

    with browsing() as seen:
        page = seen.page
        page.route(re.compile(r".*/v1/streams/flagged\?readings=\d+$"), flag)
        open_page(page, service.url, "/streams/flagged", READ_KEY)
        page.wait_for_selector('#chart[data-anomalies="2"]', timeout=TIMEOUT_MS)
        legend = page.locator(".u-legend .u-series").all_text_contents()
    assert any("anomaly" in text for text in legend)


def test_a_real_anomaly_is_marked_on_the_chart_and_shown_with_the_live_accuracy(
    service: ServiceProcess, model: dict[str, Any]
) -> None:
    """The service's own flags, nothing rewritten: readings of the daily profile the model
    expects, then one ten times too high."""
    readings = make_stream(service, model, "spiked")
    answers = [post(service, "spiked", r) for r in readings[HISTORY + 20 : HISTORY + 24]]
    ordinary = sum(a["anomalies"] for a in answers)
    spike = dict(readings[HISTORY + 24])
    spike["values"] = [10 * v for v in spike["values"]]
    assert post(service, "spiked", spike)["anomalies"] == 1
    with browsing() as seen:
        page = seen.page
        open_page(page, service.url, "/streams/spiked", READ_KEY)
        page.wait_for_selector(f'#chart[data-anomalies="{ordinary + 1}"]', timeout=TIMEOUT_MS)
        shown = page.text_content("#last-anomaly") or ""
        open_page(page, service.url, f"/models/{model['name']}", None)  # key given
        page.wait_for_selector("#live-accuracy", timeout=TIMEOUT_MS)
        headline = page.text_content("#live-headline") or ""
    assert shown != "none"
    assert "live last hour" in headline


def test_the_page_follows_again_after_the_service_restarts(tmp_path: Path) -> None:
    """On Redis the stream outlives the process: the page reconnects, gets a new snapshot
    and keeps redrawing."""
    with RedisServer() as redis_server:
        env = {"FORECAST_API_KEYS": KEYS, "FORECAST_STORE_URL": redis_server.url}
        with ServiceProcess(env) as running:
            model = model_with_accuracy(running.url, READ_KEY)
            readings = daily_profile(model, T0, 30)
            body = {"model": model["name"], "history": readings[:20]}
            put = httpx.put(f"{running.url}/v1/streams/kept", json=body, headers=bearer(WRITE_KEY))
            assert put.status_code == 201, put.text
            # The service goes away under the page: its event stream and a try or two fail.
            with browsing(r"ERR_INCOMPLETE_CHUNKED_ENCODING|ERR_CONNECTION_REFUSED") as seen:
                page = seen.page
                open_page(page, running.url, "/streams/kept", WRITE_KEY)
                page.wait_for_selector('#live[data-connections="1"]', timeout=TIMEOUT_MS)
                running.restart()
                page.wait_for_selector(
                    '#live[data-state=live][data-connections="2"]', timeout=TIMEOUT_MS
                )
                post(running, "kept", readings[20])
                page.wait_for_selector('#chart[data-seq="21"]', timeout=TIMEOUT_MS)
