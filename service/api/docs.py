"""The API reference page at ``/docs``: Swagger UI served from the package, no CDN.

Litestar's own render plugins load their scripts from a CDN (Scalar at ``@latest``), which is
a blank page on a machine without internet access and a page that changes under its users.
This one serves the Swagger UI release vendored in ``service/static/swagger-ui`` (its README
says which, and how to update it) under ``/docs/assets/``, and points it at the app's own
OpenAPI document. The page makes no request to any other host.
"""

from __future__ import annotations

import functools
import html
from pathlib import Path
from typing import Any, Final

from litestar import Request, Response, Router, get
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.params import FromPath

ASSET_DIRECTORY: Final = Path(__file__).resolve().parent.parent / "static" / "swagger-ui"
#: The files the page loads, and their media types; nothing else is served from there.
ASSETS: Final = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
#: The vendored files are versioned by the package; a day in the browser's cache is safe.
_CACHE: Final = "public, max-age=86400"


@functools.cache
def _asset(name: str) -> bytes:
    return (ASSET_DIRECTORY / name).read_bytes()


@get("/assets/{name:str}", include_in_schema=False, sync_to_thread=False)
def swagger_asset(name: FromPath[str]) -> Response[bytes]:
    """One of the page's vendored files."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFoundException(f"no asset {name!r}")
    return Response(_asset(name), media_type=media_type, headers={"Cache-Control": _CACHE})


class OfflineSwaggerPlugin(OpenAPIRenderPlugin):
    """Swagger UI from the package's own files (``/docs`` and ``/docs/swagger``)."""

    def __init__(self) -> None:
        super().__init__(path=["/", "/swagger"], favicon="", style="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        # The document is served beside the page's assets: <docs>/openapi.json.
        document = str(request.scope.get("root_path", "")) + self.get_openapi_json_route(request)
        base = document.rsplit("/", 1)[0]
        title = html.escape(str(openapi_schema["info"]["title"]))
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" type="image/png" href="{base}/assets/favicon-32x32.png">
<link rel="stylesheet" href="{base}/assets/swagger-ui.css">
<style>body {{ margin: 0 }}</style>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{base}/assets/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: {_js_string(document)},
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: true,
  // The badge would ask validator.swagger.io about the document: no request leaves.
  validatorUrl: null,
}});
</script>
</body>
</html>
""".encode()

    def receive_router(self, router: Router) -> None:
        router.register(swagger_asset)


def _js_string(text: str) -> str:
    """``text`` as a JavaScript string literal that is safe inside a <script> element."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("<", "\\u003c")
    return f'"{escaped}"'


__all__ = ["ASSETS", "ASSET_DIRECTORY", "OfflineSwaggerPlugin", "swagger_asset"]
