"""The live page at ``/ui``: a tenant's streams with their forecast fans, and the models.

The page and its files are served by the service itself, with no CDN: the page's own script
and stylesheet (``service/static/ui``) and the uPlot release vendored in
``service/static/uplot`` (its README says which, and how to update it). Loading them needs no
key: they hold no data. Every call the page makes for data goes to the API with the key the
user entered (``Authorization: Bearer``), so the page sees exactly what that key may see.

The answers carry a Content-Security-Policy that lets the page load and call only its own
origin and run no inline script, so nothing injected into the page (a hostile stream id, say)
can run or send the key elsewhere.
"""

from __future__ import annotations

import functools
import hashlib
import html
from pathlib import Path
from typing import Any, Final

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.status_codes import HTTP_304_NOT_MODIFIED

from service import __version__

STATIC: Final = Path(__file__).resolve().parent.parent / "static"
#: The files the page loads: name -> (directory, media type). Nothing else is served.
ASSETS: Final = {
    "app.js": (STATIC / "ui", "text/javascript"),
    "api.js": (STATIC / "ui", "text/javascript"),
    "chart.js": (STATIC / "ui", "text/javascript"),
    "events.js": (STATIC / "ui", "text/javascript"),
    "views.js": (STATIC / "ui", "text/javascript"),
    "app.css": (STATIC / "ui", "text/css"),
    "uPlot.iife.min.js": (STATIC / "uplot", "text/javascript"),
    "uPlot.min.css": (STATIC / "uplot", "text/css"),
}
#: The page may load and call its own origin only, and runs no inline script or style.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
#: The browser asks again each time and gets a 304 while the file is unchanged, so an
#: upgraded service never runs with a cached script of the old one.
_CACHE: Final = "no-cache"


@functools.cache
def _asset(name: str) -> tuple[bytes, str]:
    """The file's bytes and its entity tag (a digest of them)."""
    directory, _ = ASSETS[name]
    data = (directory / name).read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


@get("/ui", include_in_schema=False, sync_to_thread=False, opt={"public": True})
def ui_page(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The page itself; what it shows is drawn by its script from the API."""
    root = str(request.scope.get("root_path", ""))
    return Response(
        render_page(root, f"{root}/ui/assets"),
        media_type="text/html; charset=utf-8",
        headers={**_SECURITY_HEADERS, "Cache-Control": _CACHE},
    )


@get("/ui/assets/{name:str}", include_in_schema=False, sync_to_thread=False, opt={"public": True})
def ui_asset(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    """One of the page's files (304 while the browser's copy is current)."""
    entry = ASSETS.get(name)
    if entry is None:
        raise NotFoundException(f"no asset {name!r}")
    data, etag = _asset(name)
    headers = {**_SECURITY_HEADERS, "Cache-Control": _CACHE, "ETag": etag}
    if etag in request.headers.get("if-none-match", ""):
        return Response(b"", status_code=HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(data, media_type=entry[1], headers=headers)


def render_page(api_root: str, assets: str) -> bytes:
    """The HTML shell: the page's files, and where the API is (for a service behind a prefix)."""
    a = html.escape(assets, quote=True)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="forecast-api-root" content="{html.escape(api_root, quote=True)}">
<meta name="forecast-version" content="{html.escape(__version__, quote=True)}">
<title>stateful-forecast</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{a}/uPlot.min.css">
<link rel="stylesheet" href="{a}/app.css">
<script src="{a}/uPlot.iife.min.js" defer></script>
<script type="module" src="{a}/app.js"></script>
</head>
<body>
<header class="bar">
  <a class="brand" href="#/">stateful-forecast</a>
  <nav><a href="#/">Streams</a><a href="#/models">Models</a></nav>
  <span id="key-state" class="key-state"></span>
  <button id="key-button" type="button">API key</button>
</header>
<div id="banner" class="banner" role="alert" hidden></div>
<form id="key-form" class="key-form" hidden>
  <label for="key-input">API key</label>
  <input id="key-input" type="password" autocomplete="off" spellcheck="false"
         placeholder="the key your operator gave you">
  <label class="inline"><input id="key-remember" type="checkbox" checked>
    remember in this browser</label>
  <button type="submit">Use key</button>
  <button id="key-forget" type="button">Forget key</button>
</form>
<main id="view"><p class="muted">Loading&hellip;</p></main>
<noscript>This page needs JavaScript; the API itself is documented at /docs.</noscript>
</body>
</html>
""".encode()


__all__ = ["ASSETS", "CONTENT_SECURITY_POLICY", "render_page", "ui_asset", "ui_page"]
