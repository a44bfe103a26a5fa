"""The bare Litestar endpoint the service is compared with: same path and body, no work.

``python -m tests.bench.bare_app --port N`` serves it with uvicorn exactly as ``python -m
service`` serves the service (``uvicorn.run(app, host, port, log_level, lifespan="on")``, one
worker, uvicorn's default loop and HTTP parser), so the ratio isolates what the service does
per request beyond the framework and server.
"""

from __future__ import annotations

import argparse
from typing import Any

from litestar import Litestar, get, post


@post("/v1/streams/{stream_id:str}/observations", status_code=200)
async def observe(stream_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"stream_id": stream_id, "received": len(data.get("observations", ()))}


@get("/ready")
async def ready() -> dict[str, str]:
    return {"status": "ok"}


def create_app() -> Litestar:
    return Litestar(route_handlers=[observe, ready])


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m tests.bench.bare_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    uvicorn.run(
        create_app(), host=args.host, port=args.port, log_level=args.log_level, lifespan="on"
    )


if __name__ == "__main__":
    main()
