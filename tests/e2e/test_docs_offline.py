"""``/docs`` renders the API reference with no network, from the package's own files.

The real service runs as a process; headless Chromium, with every host but 127.0.0.1
unresolvable, opens ``/docs`` and must show every operation of the OpenAPI document. The same
browser on Litestar's stock page (scripts from a CDN) shows none: the block is real, and the
check can fail.
"""

from __future__ import annotations

import hashlib
import re

import httpx
import pytest
from litestar import Litestar, get
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from service.api.docs import ASSET_DIRECTORY, ASSETS
from tests.support.chromium import offline_page
from tests.support.inprocess import served
from tests.support.service_process import ServiceProcess

pytestmark = pytest.mark.slow

#: How long the page may take to draw the operations.
RENDER_TIMEOUT_MS = 30_000


def test_vendored_files_are_the_release_the_readme_names() -> None:
    readme = (ASSET_DIRECTORY / "README.md").read_text(encoding="utf-8")
    checksums = re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.MULTILINE)
    recorded = {name: digest for digest, name in checksums}
    assert set(ASSETS) <= set(recorded), "every served file is accounted for"
    assert {"LICENSE", "NOTICE"} <= set(recorded), "the licence travels with the files"
    for name, digest in recorded.items():
        assert hashlib.sha256((ASSET_DIRECTORY / name).read_bytes()).hexdigest() == digest, name


def test_docs_render_every_operation_offline() -> None:
    with ServiceProcess({"FORECAST_STORE_URL": "memory://"}) as service:
        document = httpx.get(f"{service.url}/docs/openapi.json").json()
        operations = [
            (method.upper(), path, op.get("summary"))
            for path, item in document["paths"].items()
            for method, op in item.items()
            if method in {"get", "put", "post", "delete", "patch"}
        ]
        assert len(operations) > 10
        with offline_page() as (page, traffic):
            page.goto(f"{service.url}/docs")
            page.wait_for_selector(".opblock-summary-path", timeout=RENDER_TIMEOUT_MS)
            shown = page.eval_on_selector_all(
                ".opblock-summary",
                """blocks => blocks.map(b => [
                    (b.querySelector('.opblock-summary-method') || {}).textContent,
                    (b.querySelector('.opblock-summary-path') || {}).getAttribute('data-path'),
                    (b.querySelector('.opblock-summary-description') || {}).textContent,
                ])""",
            )
            title = page.title()
    rendered = {(method, path) for method, path, _ in shown}
    missing = [(m, p) for m, p, _ in operations if (m, p) not in rendered]
    assert not missing, f"operations the page does not show: {missing}"
    summaries = {text for _, _, text in shown if text}
    assert {s for _, _, s in operations if s} <= summaries
    assert title == document["info"]["title"]
    assert not traffic.foreign, f"the page asked other hosts: {traffic.foreign}"
    assert not traffic.failed, f"requests that failed: {traffic.failed}"
    assert any(u.endswith("/docs/assets/swagger-ui-bundle.js") for u in traffic.urls)


def test_a_cdn_page_stays_blank_under_the_same_block() -> None:
    """Litestar's stock Swagger page loads its scripts from a CDN: blocked, it draws nothing."""

    @get("/ping", sync_to_thread=False)
    def ping() -> str:
        return "pong"

    stock = Litestar(
        [ping],
        openapi_config=OpenAPIConfig(
            title="stock", version="1", path="/docs", render_plugins=[SwaggerRenderPlugin()]
        ),
    )
    with served(stock) as base, offline_page() as (page, traffic):
        page.goto(f"{base}/docs/swagger")
        page.wait_for_timeout(2_000)
        assert page.locator(".opblock-summary-path").count() == 0
    assert traffic.foreign, "the stock page should have tried its CDN"
    assert set(traffic.foreign) <= set(traffic.failed), "a foreign request got through"
