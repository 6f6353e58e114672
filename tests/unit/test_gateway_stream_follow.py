"""How many chats a stream follows: a user past FOLLOW_MAX is told about in the log."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from contracts.api import Chat, Page
from contracts.ids import new_id
from gateway.domain.requests import Paging
from gateway.services import stream
from gateway.services.live import Hub, QueueLimits
from gateway.services.stream import StreamService


class PagedChats:
    """A worker's chat list, `size` per page, with a cursor to the next page."""

    def __init__(self, count: int, size: int) -> None:
        self.listed = [Chat(id=new_id(), users=[1, 2], createdAt=1) for _ in range(count)]
        self.size = size

    async def chats(self, uid: int, paging: Paging) -> Page[Chat]:
        start = 0 if paging.cursor is None else int(paging.cursor[1])
        end = start + self.size
        more = str(end) if end < len(self.listed) else None
        return Page[Chat](data=self.listed[start:end], nextCursor=more)


def _service(workers: Any) -> StreamService:
    return StreamService(Hub(), workers, None, None, QueueLimits(64, 65536))  # type: ignore[arg-type]


@pytest.mark.parametrize(("count", "warned"), [(5, False), (6, False), (7, True), (40, True)])
async def test_a_user_past_the_follow_bound_is_logged(
    count: int, warned: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(stream, "FOLLOW_MAX", 6)
    monkeypatch.setattr(stream, "LIMIT_MAX", 3)
    workers = PagedChats(count, 3)
    with caplog.at_level(logging.WARNING):
        followed = await _service(workers)._chats(1)
    assert list(followed) == [c.id for c in workers.listed[: min(count, 6)]]
    assert ("more than 6 chats" in caplog.text) is warned
