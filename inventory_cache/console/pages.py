"""`GET /console` and its assets, read once from the package data.

The assets are a fixed set of files (no directory serving, so no path to traverse) held
in memory with a content hash as ETag: a reload costs a 304. The HTML shell is not cached
by the browser (`no-cache`), so an upgraded service serves the new script at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter, Request
from starlette.responses import Response

from inventory_cache.errors import NotFound

router = APIRouter(tags=["console"])

_MEDIA = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# The browser may not load anything from elsewhere, nor frame the console.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


@cache
def asset(name: str) -> Asset:
    body = resources.files("inventory_cache.console").joinpath("static", name).read_bytes()
    media = "text/html; charset=utf-8" if name == "index.html" else _MEDIA[name]
    return Asset(body, media, '"' + hashlib.sha256(body).hexdigest()[:16] + '"')


def _serve(request: Request, item: Asset, cache_control: str) -> Response:
    headers = {
        "ETag": item.etag,
        "Cache-Control": cache_control,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": _CSP,
        "Referrer-Policy": "no-referrer",
    }
    if request.headers.get("if-none-match") == item.etag:
        return Response(status_code=304, headers=headers)
    return Response(item.body, media_type=item.media_type, headers=headers)


@router.get(
    "/console",
    response_class=Response,
    responses={
        200: {
            "content": {"text/html": {"example": "<!doctype html><html lang=en>...</html>"}},
            "description": "The console's page.",
        }
    },
    summary="The operations console (HTML; the page asks for an API key)",
)
async def console(request: Request) -> Response:
    return _serve(request, asset("index.html"), "no-cache")


@router.get("/console/assets/{name}", include_in_schema=False)
async def console_asset(name: str, request: Request) -> Response:
    if name not in _MEDIA:
        raise NotFound(f"no console asset {name}")
    return _serve(request, asset(name), "public, max-age=300")
