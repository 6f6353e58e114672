"""Fixes from a review of the gateway: the web client's content codings and their ETags,
which error codes a client may retry, and the request counter's `method` label."""

from __future__ import annotations

import gzip
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.errors import ErrorCode
from gateway.app import create_app
from gateway.entrypoints.middlewares import method_label
from gateway.entrypoints.web_routes import assets, wants_gzip
from gateway.settings import GatewaySettings
from tests.support.gateway_fakes import World

Client = TestClient[web.Request, web.Application]
SETTINGS = GatewaySettings(dialogue_env="local")


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    app = create_app(SETTINGS, adapters=World().adapters)
    # Raw bytes: the test, not the client, says which coding came back.
    async with TestClient(TestServer(app), auto_decompress=False) as client:
        yield client


async def _page(client: Client, **headers: str) -> Any:
    """GET / with exactly these headers (no Accept-Encoding unless given)."""
    return await client.get("/", headers=headers, skip_auto_headers=["Accept-Encoding"])


def _varies_by_coding(response: Any) -> bool:
    vary = ",".join(response.headers.getall("Vary", ()))
    return "accept-encoding" in {name.strip().lower() for name in vary.split(",")}


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip, deflate, br", True),
        ("GZip", True),
        ("gzip;q=0", False),
        ("gzip ; Q=0.000, br", False),
        ("gzip;q=0.001", True),
        ("*", True),
        ("*;q=0", False),
        ("br, *;q=0", False),
        ("identity;q=0, *", True),
        ("identity, gzip;q=0.5", False),
        ("gzip;q=0.5, identity;q=0.4", True),
        ("gzip;q=0.5, *;q=0.8", False),  # `*` covers identity, which then ranks higher
        ("gzip;q=2", False),  # not a qvalue: the entry is left out
        ("gzip;q=", False),
        ("deflate, br", False),
        ("", False),
    ],
)
def test_gzip_follows_the_accept_encoding_weights(accept_encoding: str, gzipped: bool) -> None:
    assert wants_gzip(accept_encoding) is gzipped


async def test_gzip_refused_with_q0_gets_the_plain_file(client: Client) -> None:
    index = assets()["index.html"]
    refused = await _page(client, **{"Accept-Encoding": "gzip;q=0, identity"})
    assert refused.status == 200 and "Content-Encoding" not in refused.headers
    assert await refused.read() == index.body
    accepted = await _page(client, **{"Accept-Encoding": "gzip"})
    assert accepted.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await accepted.read()) == index.body


async def test_each_coding_has_its_own_etag_and_revalidates_only_itself(client: Client) -> None:
    plain, packed = await _page(client), await _page(client, **{"Accept-Encoding": "gzip"})
    plain_tag, packed_tag = plain.headers["ETag"], packed.headers["ETag"]
    assert plain_tag != packed_tag
    assert packed_tag == plain_tag[:-1] + '-gz"'
    for response in (plain, packed):
        assert _varies_by_coding(response)

    # A cache holding the plain file must not be told it holds the gzipped one.
    other = await _page(client, **{"Accept-Encoding": "gzip", "If-None-Match": plain_tag})
    assert other.status == 200 and other.headers["ETag"] == packed_tag
    assert other.headers["Content-Encoding"] == "gzip"
    for accept, tag in (("gzip", packed_tag), ("identity", plain_tag)):
        same = await _page(client, **{"Accept-Encoding": accept, "If-None-Match": f"W/{tag}"})
        assert same.status == 304 and same.headers["ETag"] == tag
        assert _varies_by_coding(same)
        assert "Content-Encoding" not in same.headers
    assert (await _page(client, **{"If-None-Match": "*"})).status == 304


def test_a_slow_body_is_retryable_and_other_4xxx_are_not() -> None:
    retryable = {code.value for code in ErrorCode if code.retryable}
    assert retryable == {"4080", "4290", "5000", "5030", "5031", "5032"}


@pytest.mark.parametrize(
    ("method", "label"),
    [("GET", "GET"), ("OPTIONS", "OPTIONS"), ("PATCH", "PATCH"), ("BREW", "other")],
)
def test_method_label(method: str, label: str) -> None:
    assert method_label(method) == label


async def test_methods_outside_the_counted_set_share_one_series(client: Client) -> None:
    for method in ("PROPFIND", "PURGE"):  # both known to aiohttp's parsers, unknown here
        assert (await client.request(method, "/health")).status == 405
    admin = {"Authorization": f"Bearer {SETTINGS.admin_secret()}"}
    metrics = await (await client.get("/metrics", headers=admin)).text()
    other = r'gateway_http_requests_total\{method="other",route="[^"]*",status="405"\} 2\.0'
    assert re.search(other, metrics), metrics
    assert "PROPFIND" not in metrics and "PURGE" not in metrics


# What a client may put in a header value: visible ASCII, spaces and tabs.
_HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t"))


@given(_HEADER_TEXT)
def test_any_accept_encoding_is_read_without_raising_and_gzip_needs_naming(value: str) -> None:
    gzipped = wants_gzip(value)
    assert isinstance(gzipped, bool)
    if "gzip" not in value.lower() and "*" not in value:
        assert not gzipped  # only a coding the client named (by name or `*`) is sent


@given(accept=_HEADER_TEXT, if_none_match=_HEADER_TEXT)
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_any_coding_and_validator_headers_get_the_file_or_a_304(
    client: Client, accept: str, if_none_match: str
) -> None:
    index = assets()["index.html"]
    answer = await _page(client, **{"Accept-Encoding": accept, "If-None-Match": if_none_match})
    tag = answer.headers["ETag"]
    assert tag == (index.gzip_etag if wants_gzip(accept) else index.etag)
    if answer.status == 304:
        assert tag in if_none_match or "*" in if_none_match
        return
    assert answer.status == 200
    body = await answer.read()
    gzipped = answer.headers.get("Content-Encoding") == "gzip"
    assert (gzip.decompress(body) if gzipped else body) == index.body
