"""The web client (gateway/web): `/` and `/app/{name}`, read once, served with ETags.

Files are few and small, so they are read and gzipped on the first request
and kept in memory; a browser revalidates each load (`Cache-Control: no-cache`) and gets
a 304 while the file is unchanged. The gzipped bytes go to a client whose Accept-Encoding
accepts gzip, under an ETag of their own (`Vary: Accept-Encoding`). The page's
Content-Security-Policy allows only this origin's scripts, styles and connections
(gateway/entrypoints/headers.py).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import hdrs, web

from contracts.errors import ErrorCode
from gateway.entrypoints.headers import HTML_POLICY
from gateway.errors import GatewayError

WEB = Path(__file__).resolve().parents[1] / "web"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
#: An Accept-Encoding weight (RFC 9110 §12.4.2): 0 to 1 with at most three decimals.
_QVALUE = re.compile(r"0(\.\d{0,3})?|1(\.0{0,3})?")

routes = web.RouteTableDef()


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str  # of `body`
    #: Of `gzipped`: other bytes, so another strong tag (RFC 9110 §8.8.3.3); a cache that
    #: revalidates one coding must not be told it holds the other.
    gzip_etag: str
    content_type: str


@functools.cache
def assets() -> dict[str, Asset]:
    """Every file of gateway/web by name."""
    found = {}
    for path in sorted(WEB.iterdir()):
        if path.suffix in TYPES:
            body = path.read_bytes()
            tag = hashlib.sha256(body).hexdigest()[:20]
            packed = gzip.compress(body, 9, mtime=0)
            found[path.name] = Asset(body, packed, f'"{tag}"', f'"{tag}-gz"', TYPES[path.suffix])
    return found


def _codings(accept_encoding: str) -> dict[str, float]:
    """The weight of each coding an Accept-Encoding value names, by lowercase name.

    Codings and `q` are case-insensitive; an entry whose weight is not a qvalue is left
    out, so a garbled `gzip;q=2` cannot turn gzip on.
    """
    weights = {}
    for entry in accept_encoding.lower().split(","):
        coding, *params = (part.strip() for part in entry.split(";"))
        q = "1"
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                q = value.strip()
        if coding and _QVALUE.fullmatch(q):
            weights[coding] = float(q)
    return weights


def wants_gzip(accept_encoding: str) -> bool:
    """Whether to send gzip: acceptable (q > 0, by name or through `*`) and ranked no lower
    than identity.

    `*` stands for every coding not named, identity too (RFC 9110 §12.5.3). Identity that
    is neither named nor covered by `*` ranks lowest: the client named the codings it
    prefers. No header or an empty one gets identity, which every client can read.
    """
    weights = _codings(accept_encoding)
    anything = weights.get("*", 0.0)
    gzip_q = weights.get("gzip", anything)
    return gzip_q > 0 and gzip_q >= weights.get("identity", anything)


def _cached(request: web.Request, etag: str) -> bool:
    """Whether the client's If-None-Match names `etag` or is `*`, compared weakly
    (RFC 9110 §13.1.2).

    aiohttp parses the header (`request.if_none_match`): its first line only, and a list
    up to its first malformed entry. A tag it does not read costs the client a full 200,
    never a wrong 304.
    """
    tags = request.if_none_match or ()
    return any(tag.value == "*" or f'"{tag.value}"' == etag for tag in tags)


def _serve(request: web.Request, name: str) -> web.Response:
    asset = assets().get(name)
    if asset is None:
        raise GatewayError(ErrorCode.NOT_FOUND, "no such file")
    gzipped = wants_gzip(",".join(request.headers.getall(hdrs.ACCEPT_ENCODING, ())))
    etag = asset.gzip_etag if gzipped else asset.etag
    headers = {hdrs.ETAG: etag, hdrs.CACHE_CONTROL: "no-cache", hdrs.VARY: "Accept-Encoding"}
    if asset.content_type == "text/html":  # also on a 304: its headers replace the cached ones
        headers[hdrs.CONTENT_SECURITY_POLICY] = HTML_POLICY
    if _cached(request, etag):
        return web.Response(status=304, headers=headers)
    body = asset.body
    if gzipped:
        body, headers[hdrs.CONTENT_ENCODING] = asset.gzipped, "gzip"
    return web.Response(body=body, headers=headers, content_type=asset.content_type)


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    return _serve(request, "index.html")


@routes.get("/app/{name}")
async def app_file(request: web.Request) -> web.Response:
    return _serve(request, request.match_info["name"])
