"""Headless Chromium (Debian's package) driven by Playwright, with the network cut off.

Playwright's own browser download cannot work here, so the test installs Debian's
``chromium`` (as ``debian.py`` does for nginx) and points Playwright at it. ``offline_page``
opens a page that can reach the loopback address and nothing else: DNS for every other host
fails inside the browser, and every request is recorded, so a test can show both that a page
renders and that it asked no other host for anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from tests.support.debian import ensure_tool

if TYPE_CHECKING:
    from playwright.sync_api import Page

#: The flags the project runs Chromium with (DESIGN.md, field notes).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: No name resolves except the loopback address: the network is blocked for the page.
OFFLINE_FLAGS = ("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",)
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})


def chromium_or_skip() -> str:
    binary, reason = ensure_tool("chromium", "chromium")
    if binary is None:
        pytest.skip(reason)
    return binary


@dataclass
class Traffic:
    """Every request the page made, and the ones that went to another host."""

    urls: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def foreign(self) -> list[str]:
        return [u for u in self.urls if urlsplit(u).hostname not in LOCAL_HOSTS]


@contextlib.contextmanager
def offline_page() -> Iterator[tuple[Page, Traffic]]:
    """A fresh page in headless Chromium that can reach only 127.0.0.1."""
    sync_api = pytest.importorskip("playwright.sync_api")
    binary = chromium_or_skip()
    traffic = Traffic()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=binary, args=[*FLAGS, *OFFLINE_FLAGS], headless=True
        )
        try:
            page = browser.new_page()
            page.on("request", lambda request: traffic.urls.append(request.url))
            page.on("requestfailed", lambda request: traffic.failed.append(request.url))
            yield page, traffic
        finally:
            browser.close()
