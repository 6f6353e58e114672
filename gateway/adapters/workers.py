"""The workers' internal read API, reached through discovery/'s balancer."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from contracts.api import Chat, Message, Page, ReadMarker
from contracts.errors import ErrorCode
from contracts.live import Followed
from discovery import BalancedClient, NoInstanceAvailable, OutcomeUnknown
from gateway.domain.requests import Paging
from gateway.errors import GatewayError
from gateway.services.ports import InstanceView
from platform_common.http import REQUEST_ID_HEADER
from platform_common.logs import request_id

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
_CODES = {code.value: code for code in ErrorCode}


def _request_id_header() -> dict[str, str]:
    """X-Request-ID of the request being handled, for the worker's logs."""
    rid = request_id.get()
    return {} if rid is None else {REQUEST_ID_HEADER: rid}


#: Answers in which a worker refuses the gateway itself, not the client's request: its
#: entrypoint token (401: ENTRYPOINT_TOKEN differs), a method or size it does not take
#: (405, 413: another version). Each counts as the worker's failure (the next worker is
#: tried, this one ejected), and reaches the client as 5030, never as its own 4011.
REFUSALS = frozenset({401, 405, 413})


#: The body a worker sends for a route it does not have (aiohttp's 404 in the platform's
#: error body); a missing chat's 4040 says "chat not found".
_NO_SUCH_ROUTE = {"object": "error", "code": ErrorCode.NOT_FOUND.value, "message": "Not Found"}


def refuses_gateway(status: int, body: bytes) -> bool:
    """Whether a worker's answer below 500 says it lacks the route: a worker of another
    version (found in review: a route added since, such as /followed, reached the client
    as 404 4040 "Not Found" from an older worker, which was neither ejected nor passed
    over). Like REFUSALS, the instance's failure: the next worker is tried."""
    if status != 404:
        return False
    try:
        return bool(orjson.loads(body) == _NO_SUCH_ROUTE)
    except orjson.JSONDecodeError:
        return False


def pong_serves_reads(body: bytes) -> bool:
    """Whether a worker's `/ping` answer says it can serve reads: it answers 200 whatever
    its health and says `critical` (MongoDB unreachable) in the body, and such a worker
    must not be readmitted after its cool-down (`warning`: a partition stuck, reads fine)."""
    try:
        status = orjson.loads(body).get("status")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return status in ("passing", "warning")


def _says(status: int, body: bytes, code: ErrorCode) -> bool:
    """Whether a worker's answer is its error body with `code` (and the code's status)."""
    if status != code.status:
        return False
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and data.get("code") == code.value


def bus_unavailable(status: int, body: bytes) -> bool:
    """Whether a worker's 5xx says the message bus is down (5031: a new chat, members or
    a marker whose event Kafka did not take): its answer is passed on, and the worker,
    which serves reads, is not ejected for it."""
    return _says(status, body, ErrorCode.BUS_UNAVAILABLE)


def handler_failed(status: int, body: bytes) -> bool:
    """Whether a worker's 5xx says its handler failed on the request (500, 5000: a bug
    the request hit): a fault, which ejects the worker only when it keeps answering so
    (`UPSTREAM_FAULTS_TO_EJECT` in a row). Taken for the worker's failure, one request
    hitting a bug ejected every worker that its tries reached (listed since stop 44)."""
    return _says(status, body, ErrorCode.INTERNAL)


def worker_error(status: int, body: bytes) -> GatewayError:
    """The worker's own error when it sent a well-formed one about the client's request,
    else a 5xx of ours."""
    if status in REFUSALS or refuses_gateway(status, body):
        log.error(
            "dialogue workers refuse the gateway", extra={"status": status, "body": body[:200]}
        )
        return GatewayError(ErrorCode.NO_WORKER, "no dialogue worker accepts this gateway")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and data.get("object") == "error":
        code = _CODES.get(str(data.get("code")))
        message = data.get("message")
        if code is not None and code.status == status and isinstance(message, str):
            return GatewayError(code, message)
    log.error("unexpected worker answer", extra={"status": status, "body": body[:200]})
    if status >= 500:
        return GatewayError(ErrorCode.NO_WORKER, f"dialogue worker failed (status {status})")
    return GatewayError(ErrorCode.INTERNAL, f"unexpected worker answer (status {status})")


class WorkerClient:
    """Typed calls to the worker API; every call carries the request id and the caller's uid."""

    def __init__(self, client: BalancedClient) -> None:
        self._client = client

    async def _call(
        self,
        model: type[M],
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
        idempotent: bool = True,
    ) -> M:
        read: list[tuple[bytes, M]] = []  # the body `readable` accepted, as a model

        def readable(body: bytes) -> bool:
            try:
                read[:] = [(body, model.model_validate_json(body))]
            except ValidationError:
                return False
            return True

        try:
            response = await self._client.request(
                method,
                path,
                params=params,
                json=json,
                headers=_request_id_header(),
                idempotent=idempotent,
                # A success whose body is not the answer's shape: that worker is broken
                # (or not one of ours), and a read moves on to the next one.
                readable=readable if idempotent else None,
            )
        except OutcomeUnknown as exc:
            log.warning("worker call may or may not have taken effect: %s", exc)
            raise GatewayError(
                ErrorCode.NO_WORKER, "dialogue worker failed; the change may or may not be applied"
            ) from None
        except NoInstanceAvailable as exc:
            log.warning("no worker available: %s", exc)
            raise GatewayError(ErrorCode.NO_WORKER, "no dialogue worker available") from None
        if response.status >= 400:
            raise worker_error(response.status, response.body)
        if read and read[0][0] is response.body:
            return read[0][1]  # validated once, when it was judged
        try:
            return model.model_validate_json(response.body)
        except ValidationError as exc:
            log.error("worker answer does not match %s: %s", model.__name__, exc)
            raise GatewayError(ErrorCode.INTERNAL, "unexpected worker answer") from None

    async def chat(self, uid: int, cid: str) -> Chat:
        return await self._call(Chat, "GET", f"/chats/{cid}", params={"uid": str(uid)})

    async def chats(self, uid: int, paging: Paging) -> Page[Chat]:
        params = {"uid": str(uid), **paging.params()}
        return await self._call(Page[Chat], "GET", "/chats", params=params)

    async def followed(self, uid: int) -> Followed:
        return await self._call(Followed, "GET", "/followed", params={"uid": str(uid)})

    async def create_chat(self, users: list[int]) -> Chat:
        return await self._call(Chat, "POST", "/chats", json={"users": users}, idempotent=False)

    async def add_users(self, uid: int, cid: str, users: list[int]) -> Chat:
        return await self._call(
            Chat, "PUT", f"/chats/{cid}", params={"uid": str(uid)}, json={"users": users}
        )

    async def messages(self, uid: int, cid: str, paging: Paging) -> Page[Message]:
        params = {"uid": str(uid), "cid": cid, **paging.params()}
        return await self._call(Page[Message], "GET", "/messages", params=params)

    async def mark_read(self, uid: int, cid: str, seq: int) -> ReadMarker:
        return await self._call(
            ReadMarker, "PUT", f"/chats/{cid}/read", params={"uid": str(uid)}, json={"seq": seq}
        )

    async def ping(self) -> None:
        """A worker serves reads: the instances are asked in turn, each once, as a read's
        tries are, until one's pong says so (asking only one made /ready flap while
        another served). The pong is judged as the readmission probe judges it: one
        saying `critical` (200, the health in the body) is that worker's failure, so
        /ready, which anyone may poll, never readmits a worker that cannot serve reads."""
        try:
            response = await self._client.request(
                "GET", "/ping", headers=_request_id_header(), healthy=pong_serves_reads
            )
        except NoInstanceAvailable as exc:
            raise GatewayError(ErrorCode.NO_WORKER, "no dialogue worker available") from exc
        if response.status >= 400:
            raise worker_error(response.status, response.body)
        if not pong_serves_reads(response.body):
            # The instance by name in the log only: /ready answers anyone, and an
            # instance id names a worker's address.
            log.warning("no worker serves reads; the last asked: %s", response.instance_id)
            raise GatewayError(ErrorCode.NO_WORKER, "no worker serves reads")

    def instances(self) -> list[InstanceView]:
        return [
            InstanceView(s.id, s.url, s.requests, s.failures, s.ejections, s.healthy)
            for s in self._client.stats()
        ]
