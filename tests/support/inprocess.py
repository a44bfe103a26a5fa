"""An app served by a real uvicorn server in a thread of the test process.

For tests that need what only a real server gives (concurrent requests, a browser) and an
app object built in the test (an injected tracer, a stock Litestar plugin to compare with).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from tests.support.redis_server import free_port

START_TIMEOUT_SECONDS = 30.0


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """``app`` behind uvicorn on a free loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not server.started:
        assert thread.is_alive(), "the server exited at start-up"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=START_TIMEOUT_SECONDS)
