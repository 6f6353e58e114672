"""What the gateway makes of a worker's error answers (gateway/adapters/workers.py): the
worker's own error about the client's request is passed on; an answer in which the worker
refuses the gateway itself (another token, another version) is the worker's failure and
reaches the client as 5030."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import ErrorCode
from gateway.adapters.workers import handler_failed, refuses_gateway, worker_error


def _body(code: str, message: str) -> bytes:
    return orjson.dumps({"object": "error", "code": code, "message": message})


def test_a_route_the_worker_lacks_is_a_refusal_not_the_clients_404() -> None:
    """Found in review: an older worker without a route answered 404 4040 "Not Found",
    and the client got it, as if its chat did not exist."""
    missing_route = _body("4040", "Not Found")
    assert refuses_gateway(404, missing_route)
    assert worker_error(404, missing_route).code is ErrorCode.NO_WORKER


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, _body("4040", "chat not found")),
        (403, _body("4031", "not a member of this chat")),
        (404, b"not json"),
        (409, _body("4091", "Not Found")),
    ],
)
def test_the_workers_answers_about_the_request_are_not_refusals(status: int, body: bytes) -> None:
    assert not refuses_gateway(status, body)


def test_a_missing_chat_reaches_the_client_as_the_worker_said() -> None:
    error = worker_error(404, _body("4040", "chat not found"))
    assert (error.code, error.message) == (ErrorCode.NOT_FOUND, "chat not found")


_JSON_INTS = st.integers(-(2**63), 2**64 - 1)  # what orjson writes
_ERROR_BODIES = st.builds(
    lambda code, message, extra: orjson.dumps(
        {**extra, "object": "error", "code": code, "message": message}
    ),
    st.one_of(st.sampled_from([c.value for c in ErrorCode]), st.text(max_size=6), _JSON_INTS),
    st.text(max_size=20),
    st.dictionaries(st.text(max_size=5), _JSON_INTS, max_size=2),
)


@settings(max_examples=300)
@given(status=st.integers(100, 599), body=st.one_of(st.binary(max_size=80), _ERROR_BODIES))
def test_only_a_500_saying_5000_is_a_handler_fault(status: int, body: bytes) -> None:
    """A fault (the worker's handler failed on the request) ejects a worker only when
    it keeps answering so; any other 5xx, or a 500 that is not the worker's 5000, is a
    failure as before."""
    try:
        code = orjson.loads(body).get("code")
    except (orjson.JSONDecodeError, AttributeError):
        code = None
    assert handler_failed(status, body) == (status == 500 and code == "5000")


def test_a_handler_fault_reaches_the_client_as_5000() -> None:
    error = worker_error(500, _body("5000", "internal error"))
    assert error.code is ErrorCode.INTERNAL and error.message == "internal error"
