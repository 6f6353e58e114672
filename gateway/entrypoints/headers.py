"""Headers every answer carries: no MIME sniffing, no caching, a strict content policy,
no server versions."""

from __future__ import annotations

from aiohttp import hdrs, web

#: The Server header of every answer: the product, not its versions.
SERVER = "dialogue-gateway"
#: For JSON and text: nothing may load, nothing may frame it (OWASP REST guidance).
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
#: For HTML: only this origin's own scripts, styles and API calls; no plugins, no framing.
HTML_POLICY = (
    "default-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


def secure(response: web.StreamResponse) -> None:
    """Add the security headers to a response that has not been sent yet."""
    headers = response.headers
    # Before aiohttp's own default (`Python/<version> aiohttp/<version>`), which tells
    # anyone which versions to look up advisories for.
    headers[hdrs.SERVER] = SERVER
    headers[hdrs.X_CONTENT_TYPE_OPTIONS] = "nosniff"
    headers.setdefault(hdrs.CACHE_CONTROL, "no-store")
    html = response.content_type == "text/html"
    headers.setdefault(hdrs.CONTENT_SECURITY_POLICY, HTML_POLICY if html else API_POLICY)


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """The app's on_response_prepare hook: every answer of the app goes through here."""
    secure(response)
