"""The server process freezes what is alive after start-up out of the cyclic collector's way."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from service.app import create_app
from service.settings import Settings


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # frozen objects of this test's app must not outlive it


@pytest.mark.usefixtures("unfrozen")
@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_gc_freezes_only_when_asked(model_repository: Path, freeze: bool) -> None:
    settings = Settings(model_repository=model_repository, providers="cpu")
    with TestClient(app=create_app(settings, freeze_gc=freeze)) as client:
        assert client.get("/health/ready").status_code == 200
        frozen = gc.get_freeze_count()
    if freeze:
        assert frozen > 10_000  # the app, its models and every module loaded so far
    else:
        assert frozen == 0
