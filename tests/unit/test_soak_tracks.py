"""What the soak's live clients check (bench/soak/tracks.py): per chat, the seqs held over
the run, and per connection the order docs/live.md promises. The last test drives the
gateway's real Session with hand-written fakes and checks that whatever it sends keeps
the promise as `Order` reads it (else the soak would fail runs the gateway got right)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from bench.soak.tracks import OUT_OF_ORDER, UNCOVERED, Order, Track
from contracts.api import Message, Page
from contracts.events import MessageCreated
from contracts.live import CATCH_UP_MAX, CloseCode
from gateway.domain.requests import Paging
from gateway.services.live import Hub, QueueLimits, Session
from tests.support.waiting import eventually

CID = "c" * 24
WITNESS = "d" * 24


def test_a_track_counts_each_seq_once_and_what_is_missing_below_a_bound() -> None:
    track = Track()
    assert [track.see(s) for s in (1, 3, 3, 2, 1)] == [True, True, False, True, False]
    assert track.duplicates == 2
    assert track.missing(3) == 0 and track.missing(5) == 2


def test_seqs_in_order_from_since_break_nothing() -> None:
    order = Order({CID: 4})
    assert [order.message(CID, s) for s in (5, 6, 7)] == [None, None, None]


def test_a_message_past_the_next_seq_is_an_uncovered_gap() -> None:
    order = Order({CID: 0})
    assert order.message(CID, 1) is None
    assert order.message(CID, 3) == UNCOVERED
    assert order.message(CID, 4) is None  # counted once, at the jump


def test_the_first_frame_after_since_must_not_skip_either() -> None:
    assert Order({CID: 4}).message(CID, 6) == UNCOVERED
    assert Order({}).message(CID, 2) == UNCOVERED  # a chat not in since starts at 0 here


def test_a_message_behind_what_the_socket_sent_is_out_of_order() -> None:
    order = Order({CID: 0})
    assert [order.message(CID, s) for s in (1, 2, 3)] == [None, None, None]
    assert order.message(CID, 2) == OUT_OF_ORDER  # a repeat on the same socket
    assert order.message(CID, 4) is None


def test_a_gap_frame_covers_its_range() -> None:
    order = Order({CID: 2})
    assert order.gap(CID, 3, 9) is None
    assert order.message(CID, 10) is None
    assert order.gap(CID, 12, 15) == UNCOVERED  # 11 was neither sent nor named
    assert order.gap(CID, 14, 20) == OUT_OF_ORDER


def test_after_a_reconnect_seqs_the_client_holds_may_come_again() -> None:
    order = Order({CID: 10})  # the server's chat list can lag what since says
    assert order.message(CID, 7) is None
    assert [order.message(CID, s) for s in (8, 9, 10, 11)] == [None, None, None, None]


def test_chats_are_checked_apart() -> None:
    order = Order({CID: 0, WITNESS: 5})
    assert order.message(WITNESS, 6) is None
    assert order.message(CID, 1) is None
    assert order.message(WITNESS, 7) is None


# --- the gateway's Session, with fakes ------------------------------------------------


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, text: str) -> None:
        self.sent.append(orjson.loads(text))

    def close(self, code: CloseCode, reason: str) -> None:
        raise AssertionError(f"closed: {code} {reason}")


class FakeWorkers:
    def __init__(self) -> None:
        self.stored: dict[str, list[Message]] = {}

    def add(self, cid: str, count: int) -> list[MessageCreated]:
        chat = self.stored.setdefault(cid, [])
        made = []
        for _ in range(count):
            seq = len(chat) + 1
            message = Message(id=f"{seq:024x}", cid=cid, uid=1, createdAt=1, text="m", seq=seq)
            chat.append(message)
            made.append(MessageCreated(cid=cid, seq=seq, message=message))
        return made

    async def messages(self, uid: int, cid: str, paging: Paging) -> Page[Message]:
        assert paging.cursor is not None
        after = int(paging.cursor[1])
        found = [m for m in self.stored.get(cid, []) if (m.seq or 0) > after][: paging.limit]
        return Page[Message](data=list(reversed(found)))


class Metrics:
    def delivered(self, kind: str, latency: float | None) -> None: ...

    def overflowed(self) -> None: ...

    def skipped_event(self, reason: str) -> None: ...

    def caught_up(self, messages: int, gaps: int) -> None: ...


@given(
    before=st.sampled_from([0, 3, 30, CATCH_UP_MAX + 40]),
    since_share=st.floats(0, 1),
    listed_share=st.floats(0, 1),
    after=st.integers(0, 30),
    seed=st.integers(0, 2**16),
)
def test_what_the_gateway_sends_keeps_the_order_the_soak_checks(
    before: int, since_share: float, listed_share: float, after: int, seed: int
) -> None:
    """A client holding `since` of `before` stored messages connects while the chat list
    says `listed` (it can lag the store: the events of the messages above it come after
    the listing); `after` more are stored. The events above `listed` arrive shuffled,
    some twice. Nothing the socket gets breaks `Order`, and with the gap ranges paged
    the client holds every seq."""
    since = round(before * since_share)
    listed = round(before * listed_share)

    async def run() -> list[dict[str, Any]]:
        hub, workers, socket = Hub(), FakeWorkers(), FakeSocket()
        pending = workers.add(CID, before)[listed:]
        session = Session(1, socket, workers, Metrics(), QueueLimits(), lambda: 0.0)
        hub.register(session)
        hub.follow(session, [CID, WITNESS])
        await session.start({CID: since, WITNESS: 0}, {CID: listed, WITNESS: 0})
        events = pending + workers.add(CID, after)
        rng = random.Random(seed)
        shuffled = events + rng.sample(events, len(events) // 2)
        rng.shuffle(shuffled)
        for event in shuffled:
            hub.publish(event)
        hub.publish(workers.add(WITNESS, 1)[0])  # queued last: once it is out, all is
        await eventually(lambda: any(f.get("cid") == WITNESS for f in socket.sent))
        return socket.sent

    order, track = Order({CID: since}), Track()
    for seq in range(1, since + 1):
        track.see(seq)  # what the client held when it connected
    for frame in asyncio.run(run()):
        if frame.get("cid") != CID:
            continue
        if frame["type"] == "message":
            assert order.message(CID, frame["seq"]) is None, frame
            track.see(frame["seq"])
        elif frame["type"] == "gap":
            assert order.gap(CID, frame["fromSeq"], frame["toSeq"]) is None, frame
            for seq in range(frame["fromSeq"], frame["toSeq"] + 1):
                track.see(seq)  # what the client pages over REST
    assert track.missing(before + after) == 0
