"""``forecast-service mqtt``: the MQTT bridge on its own, without the HTTP server.

It opens what the server would (models, store, bus) from the same ``FORECAST_*`` settings,
runs the bridge until SIGINT or SIGTERM, and serves its Prometheus metrics on a port of its
own when asked (there is no HTTP server to carry ``/metrics``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from prometheus_client import start_http_server

from service.settings import Settings

log = logging.getLogger("service.mqtt")


def run(settings: Settings, *, metrics_port: int | None) -> int:
    if not settings.mqtt_url:
        print(
            "forecast-service mqtt: set FORECAST_MQTT_URL (mqtt://host:port) to name the broker",
            file=sys.stderr,
        )
        return 2
    asyncio.run(_bridge_until_stopped(settings, metrics_port))
    return 0


async def _bridge_until_stopped(settings: Settings, metrics_port: int | None) -> None:
    from service.app import create_app

    app = create_app(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with app.lifespan():
        if metrics_port is not None:
            server, _ = start_http_server(
                metrics_port, addr=settings.host, registry=app.state.metrics.registry
            )
            log.info("metrics on http://%s:%d/metrics", settings.host, metrics_port)
        else:
            server = None
        try:
            await stop.wait()
        finally:
            if server is not None:
                server.shutdown()


__all__ = ["run"]
