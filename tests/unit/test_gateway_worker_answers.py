"""What the gateway makes of a worker's error answers (gateway/adapters/workers.py): the
worker's own error about the client's request is passed on; an answer in which the worker
refuses the gateway itself (another token, another version) is the worker's failure and
reaches the client as 5030."""

from __future__ import annotations

import orjson
import pytest

from contracts.errors import ErrorCode
from gateway.adapters.workers import refuses_gateway, worker_error


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
