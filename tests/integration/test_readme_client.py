"""The README's Python examples run as written against the real service."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from tests.support.service_process import ServiceProcess

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
#: Where the examples say the service is.
EXAMPLE_URL = "http://127.0.0.1:8000"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", README.read_text(encoding="utf-8"), re.S | re.M)


def test_the_readme_shows_the_client() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 2
    assert all("forecast_client" in block for block in blocks)


def test_every_python_example_of_the_readme_runs() -> None:
    with ServiceProcess({"FORECAST_STORE_URL": "memory://"}) as service:
        for block in python_blocks():
            assert EXAMPLE_URL in block
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(block.replace(EXAMPLE_URL, service.url), "README.md", "exec"), {})
            assert printed.getvalue(), "an example that shows nothing"
