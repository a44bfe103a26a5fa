"""``/ui`` and its files, in-process: open without a key, a strict policy, nothing else served."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from service.api.ui import ASSETS, CONTENT_SECURITY_POLICY
from service.app import create_app
from service.settings import Settings

KEY = "ui-routes-key-0123456789"


@pytest.fixture
async def client(model_repository: Path) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = Settings(
        model_repository=model_repository,
        providers="cpu",
        api_keys=[{"key": KEY, "tenant": "t", "role": "read"}],
    )
    async with AsyncTestClient(app=create_app(settings)) as c:
        yield c


async def test_the_page_needs_no_key_and_forbids_inline_and_foreign_scripts(
    client: AsyncTestClient[Any],
) -> None:
    r = await client.get("/ui")
    assert r.status_code == 200
    assert (await client.get("/ui/")).text == r.text
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "/ui/assets/app.js" in r.text
    assert "/ui/assets/uPlot.iife.min.js" in r.text
    assert "<script>" not in r.text, "no inline script: the policy would refuse it"
    # The data behind it is not open: the page's own calls carry the key.
    assert (await client.get("/v1/models")).status_code == 401


@pytest.mark.parametrize("name", sorted(ASSETS))
async def test_every_asset_is_served_with_its_type_and_revalidated(
    client: AsyncTestClient[Any], name: str
) -> None:
    r = await client.get(f"/ui/assets/{name}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(ASSETS[name][1])
    assert r.content == (ASSETS[name][0] / name).read_bytes()
    etag = r.headers["etag"]
    again = await client.get(f"/ui/assets/{name}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""


@pytest.mark.parametrize(
    "path", ["/ui/assets/README.md", "/ui/assets/LICENSE", "/ui/assets/..%2Fapp.py", "/ui/x"]
)
async def test_nothing_else_is_served(client: AsyncTestClient[Any], path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 404, path


async def test_the_page_is_not_part_of_the_api_document(client: AsyncTestClient[Any]) -> None:
    document = (await client.get("/docs/openapi.json")).json()
    assert not [p for p in document["paths"] if p.startswith("/ui")]


async def test_every_script_the_page_imports_is_served(client: AsyncTestClient[Any]) -> None:
    """app.js imports the other modules by name: each must be one of the served files."""
    for name, (directory, media) in ASSETS.items():
        if media != "text/javascript" or name.startswith("uPlot"):
            continue
        source = (directory / name).read_text(encoding="utf-8")
        for imported in re.findall(r'from "\./([^"]+)"', source):
            assert imported in ASSETS, f"{name} imports {imported}, which is not served"
