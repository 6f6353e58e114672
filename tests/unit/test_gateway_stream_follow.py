"""How many chats a stream follows: a user past FOLLOW_MAX is told about in the log."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from contracts.ids import new_id
from contracts.live import Followed
from gateway.services.live import Hub, QueueLimits
from gateway.services.stream import StreamService


class Listed:
    """The workers' answer for the chats a stream follows."""

    def __init__(self, count: int, more: bool) -> None:
        self.answer = Followed(data={new_id(): n for n in range(count)}, more=more)

    async def followed(self, uid: int) -> Followed:
        return self.answer


def _service(workers: Any) -> StreamService:
    return StreamService(Hub(), workers, None, None, QueueLimits(64, 65536))  # type: ignore[arg-type]


@pytest.mark.parametrize("more", [False, True])
async def test_a_user_past_the_follow_bound_is_logged(
    more: bool, caplog: pytest.LogCaptureFixture
) -> None:
    workers = Listed(6, more)
    with caplog.at_level(logging.WARNING):
        followed = await _service(workers)._chats(1)
    assert followed == workers.answer.data
    assert ("the stream follows the 6 most active only" in caplog.text) is more
