"""Settings as the service would read them from a deployment file's environment."""

from __future__ import annotations

import os
from collections.abc import Mapping

import pytest

from service.settings import Settings


def settings_from(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """``Settings()`` with exactly ``env``'s ``FORECAST_*`` variables set (none of the test
    process's own): what start-up would accept or refuse."""
    with monkeypatch.context() as patch:
        for key in list(os.environ):
            if key.upper().startswith("FORECAST_"):
                patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        return Settings()
