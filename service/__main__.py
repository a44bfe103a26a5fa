"""``python -m service``: start the HTTP server from ``FORECAST_*`` settings."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from pydantic import ValidationError

if TYPE_CHECKING:
    from service.settings import Settings


def settings_or_exit() -> Settings:
    """The settings from the environment, or exit 2 naming each unknown or invalid one."""
    from service.settings import Settings, unknown_variables

    unknown = unknown_variables(os.environ)
    if unknown:
        print(f"unknown settings (typo?): {', '.join(unknown)}", file=sys.stderr)
        raise SystemExit(2)
    try:
        return Settings()
    except ValidationError as exc:
        lines = [
            f"  FORECAST_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        ]
        print("invalid settings:\n" + "\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None


def main() -> None:
    import uvicorn

    from service.app import create_app
    from service.logs import configure_logging
    from service.server import uvicorn_options

    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(create_app(settings, freeze_gc=True), **uvicorn_options(settings))


if __name__ == "__main__":
    main()
