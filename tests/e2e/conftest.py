"""Fixtures of the end-to-end tests that several files share."""

from __future__ import annotations

import pytest

from tests.support.debian import ensure_tool


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    """Debian's nginx, installed on first use; the tests that need it skip without it."""
    binary, reason = ensure_tool("nginx", "nginx-light")
    if binary is None:
        pytest.skip(reason)
    return binary
