"""Driving the live page (``/ui``) in headless Chromium, and the screenshots in ``docs/ui/``.

``python -m tests.support.ui_page docs/ui`` starts the service on the shipped models, feeds a
stream real half-hourly demand (Taylor's series, from pmdarima: the train extra) and writes
``stream.png`` (the live chart) and ``model.png`` (held-out accuracy beside the baselines).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from playwright.sync_api import Page

#: An API key per role and tenant the page tests use.
WRITE_KEY = "ui-acme-writer-0123456789"
READ_KEY = "ui-acme-reader-0123456789"
OTHER_TENANT_KEY = "ui-beta-writer-0123456789"
KEYS = json.dumps(
    [
        {"key": WRITE_KEY, "tenant": "acme", "role": "write"},
        {"key": READ_KEY, "tenant": "acme", "role": "read"},
        {"key": OTHER_TENANT_KEY, "tenant": "beta", "role": "write"},
    ]
)
#: How long the page may take to draw something.
TIMEOUT_MS = 20_000
VIEWPORT = {"width": 1200, "height": 860}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def model_with_accuracy(base: str, key: str) -> dict[str, Any]:
    """The latest manifest summary of a served model whose manifest records accuracy.

    Read from the service rather than named here, so the tests follow whatever demo models
    the repository ships.
    """
    models = httpx.get(f"{base}/v1/models", headers=bearer(key)).raise_for_status().json()
    for entry in models["models"]:
        detail = httpx.get(f"{base}/v1/models/{entry['name']}", headers=bearer(key)).json()
        latest = next(v for v in detail["versions"] if v["version"] == detail["latest"])
        if latest.get("accuracy"):
            return dict(latest)
    raise AssertionError("no served model records held-out accuracy")


def daily_profile(model: dict[str, Any], start: float, count: int) -> list[dict[str, Any]]:
    """``count`` readings from ``start`` at the model's frequency: a daily cycle like
    electricity demand (every feature follows it, scaled), deterministic."""
    rows = []
    features = len(model["features"])
    for i in range(count):
        t = start + i * model["frequency"]
        day = 2 * math.pi * ((t % 86_400) / 86_400)
        level = 30_000 + 6_000 * math.sin(day - 2.0) + 1_500 * math.sin(2 * day + 0.5)
        rows.append({"timestamp": t, "values": [level / (1 + k) for k in range(features)]})
    return rows


def open_page(page: Page, base: str, route: str, key: str | None) -> None:
    """Open ``/ui#<route>`` and, when the page asks for a key, give it ``key``."""
    page.set_viewport_size(VIEWPORT)
    page.goto(f"{base}/ui#{route}")
    if key is not None:
        page.wait_for_selector("#key-form:not([hidden])", timeout=TIMEOUT_MS)
        page.fill("#key-input", key)
        page.click("#key-form button[type=submit]")


def taylor_readings(start: float, count: int) -> list[dict[str, Any]]:
    """The first ``count`` half-hours of Taylor's demand series (needs pmdarima)."""
    from pmdarima.datasets import load_taylor

    series = load_taylor()
    return [{"timestamp": start + 1800 * i, "value": float(series[i])} for i in range(count)]


def write_screenshots(directory: Path) -> list[Path]:
    """Start the service, show a stream of real demand and a model page, save both."""
    from tests.support.chromium import offline_page
    from tests.support.service_process import ServiceProcess

    directory.mkdir(parents=True, exist_ok=True)
    start = 1_780_000_000 - 1_780_000_000 % 86_400
    env = {"FORECAST_API_KEYS": KEYS, "FORECAST_HISTORY_LENGTH": "144"}
    with ServiceProcess(env) as service, offline_page() as (page, _):
        headers = bearer(WRITE_KEY)
        readings = taylor_readings(start, 500)
        body = {"model": "taylor-lstm", "history": readings[:480]}
        put = httpx.put(f"{service.url}/v1/streams/substation-7", json=body, headers=headers)
        put.raise_for_status()
        open_page(page, service.url, "/streams/substation-7", WRITE_KEY)
        page.wait_for_selector("#live[data-state=live]", timeout=TIMEOUT_MS)
        for seq, reading in enumerate(readings[480:], start=481):  # the page follows live
            url = f"{service.url}/v1/streams/substation-7/observations"
            httpx.post(url, json={"observations": [reading]}, headers=headers).raise_for_status()
            page.wait_for_selector(f'#chart[data-seq="{seq}"]', timeout=TIMEOUT_MS)
        stream_png = directory / "stream.png"
        page.set_viewport_size({"width": VIEWPORT["width"], "height": 680})
        page.screenshot(path=str(stream_png), full_page=True)
        page.goto(f"{service.url}/ui#/models/taylor-lstm")
        page.wait_for_selector("#accuracy", timeout=TIMEOUT_MS)
        model_png = directory / "model.png"
        page.screenshot(path=str(model_png), full_page=True)
    return [stream_png, model_png]


if __name__ == "__main__":
    for path in write_screenshots(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/ui")):
        print(path)
