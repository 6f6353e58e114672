"""The web client (gateway/web): `/` and `/app/{name}`, read once, served with ETags.

Files are few and small, so they are read and gzipped on the first request
and kept in memory; a browser revalidates each load (`Cache-Control: no-cache`) and gets
a 304 while the file is unchanged. The page's Content-Security-Policy allows only this
origin's scripts, styles and connections (gateway/entrypoints/headers.py).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import hdrs, web

from contracts.errors import ErrorCode
from gateway.entrypoints.headers import HTML_POLICY
from gateway.errors import GatewayError

WEB = Path(__file__).resolve().parents[1] / "web"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}

routes = web.RouteTableDef()


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str
    content_type: str


@functools.cache
def assets() -> dict[str, Asset]:
    """Every file of gateway/web by name."""
    found = {}
    for path in sorted(WEB.iterdir()):
        if path.suffix in TYPES:
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            packed = gzip.compress(body, 9, mtime=0)
            found[path.name] = Asset(body, packed, etag, TYPES[path.suffix])
    return found


def _serve(request: web.Request, name: str) -> web.Response:
    asset = assets().get(name)
    if asset is None:
        raise GatewayError(ErrorCode.NOT_FOUND, "no such file")
    headers = {hdrs.ETAG: asset.etag, hdrs.CACHE_CONTROL: "no-cache", hdrs.VARY: "Accept-Encoding"}
    if asset.content_type == "text/html":  # also on a 304: its headers replace the cached ones
        headers[hdrs.CONTENT_SECURITY_POLICY] = HTML_POLICY
    if asset.etag in request.headers.get(hdrs.IF_NONE_MATCH, ""):
        return web.Response(status=304, headers=headers)
    body = asset.body
    if "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, ""):
        body, headers[hdrs.CONTENT_ENCODING] = asset.gzipped, "gzip"
    return web.Response(body=body, headers=headers, content_type=asset.content_type)


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    return _serve(request, "index.html")


@routes.get("/app/{name}")
async def app_file(request: web.Request) -> web.Response:
    return _serve(request, request.match_info["name"])
