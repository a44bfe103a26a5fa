"""``python -m service``: start the HTTP server from ``FORECAST_*`` settings."""

from __future__ import annotations

import os
import sys

from pydantic import ValidationError


def main() -> None:
    import uvicorn

    from service.app import create_app
    from service.logs import configure_logging
    from service.settings import Settings, unknown_variables

    unknown = unknown_variables(os.environ)
    if unknown:
        print(f"unknown settings (typo?): {', '.join(unknown)}", file=sys.stderr)
        raise SystemExit(2)
    try:
        settings = Settings()
    except ValidationError as exc:
        lines = [
            f"  FORECAST_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        ]
        print("invalid settings:\n" + "\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings, freeze_gc=True),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # uvicorn's records go through the service's handler; the app writes the access log.
        log_config=None,
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
