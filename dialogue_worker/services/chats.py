"""The internal API's use cases: chats, their history, read markers and the chat list."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from contracts.api import Chat, Message, Page, ReadMarker
from contracts.errors import ErrorCode
from contracts.events import ChatCreated, ChatRead, EventChat, MembersAdded
from contracts.ids import new_id
from contracts.live import FOLLOW_MAX, Followed
from contracts.requests import MAX_USERS
from dialogue_worker.domain.chat_list import (
    ListCursor,
    Position,
    Ranked,
    in_snapshot,
    moved_since,
    page_of_chats,
)
from dialogue_worker.domain.chats import ChatView, Full, new_chat_users, require_member
from dialogue_worker.domain.history import (
    Direction,
    HistoryQuery,
    HistoryRequest,
    lacking,
    more_beyond,
    wanted,
)
from dialogue_worker.errors import (
    OutboxUnavailable,
    RequestError,
    StorageUnavailable,
    WorkerError,
)
from dialogue_worker.services.chat_lists import ChatLists
from dialogue_worker.services.ports import ChatStore, Event, Outbox
from platform_common.gather import bounded
from platform_common.retry import Backoff, retry

log = logging.getLogger(__name__)

#: Chats that moved since a listing began, looked back into at once (each look-back is
#: one page read, its newest, more when everything on that page came later).
LOOK_BACKS = 8
#: Seconds a chat list's cursor is taken for after its first page (then 4005: start over).
CURSOR_TTL = 900.0
#: Seconds a cursor's snapshot may be ahead of this worker's clock (another worker's).
CURSOR_AHEAD = 60.0
#: Seconds the removal of a chat whose chat.created was not published is tried for, and
#: the opening of one whose event is out.
REMOVE_WITHIN = 1.0
#: Seconds past `publish_timeout` a read waits for a pending chat to be opened or removed;
#: one still pending then (its worker died while creating it, or its store fails) is not
#: found. With the defaults 1.25 s in all, within the gateway's 2 s per attempt
#: (UPSTREAM_REQUEST_TIMEOUT), which would otherwise take the wait for a dead worker.
SETTLE_MARGIN = 0.25
#: Seconds a read waits for a pending chat at most, whatever API_PUBLISH_TIMEOUT is (it
#: may be set up to 60 s): longer, the gateway would take the wait for a dead worker.
SETTLE_MOST = 1.5
#: Seconds between reads of a pending chat: the first wait, and the longest.
SETTLE_POLL = (0.02, 0.2)


class ChatService:
    """Each method takes validated request values and returns an API model.

    Chat creation, new members and read markers are published to the events topic
    before the answer (at-least-once: a retried request may publish again). Kafka not
    taking an event within `publish_timeout` is a 5031: new members and a marker stay
    stored and their retry publishes again; a new chat is removed again, as nobody has
    its id yet and a retry creates another. Until its event is out a new chat is
    pending: no list shows it, and a read of it or a write to it waits until it is
    opened or removed (`_settled`), so nobody uses a chat that may still go.
    """

    def __init__(
        self,
        store: ChatStore,
        outbox: Outbox,
        clock: Callable[[], float] = time.time,
        *,
        publish_timeout: float = 1.0,
        max_members: int = MAX_USERS,
        lists: ChatLists | None = None,
        settle_margin: float = SETTLE_MARGIN,
    ) -> None:
        self._settle_within = min(publish_timeout + settle_margin, SETTLE_MOST)
        self._max_members = max_members
        #: Without kept lists, each list is read from the store.
        self._lists = lists or ChatLists(store, None, most=0, ttl=0)
        self._store = store
        self._outbox = outbox
        self._clock = clock
        self._publish_timeout = publish_timeout

    async def _publish(self, event: Event, stored: str) -> None:
        """Publish `event` within the timeout, else a 5031 saying what stays `stored`."""
        try:
            async with asyncio.timeout(self._publish_timeout):
                await self._outbox.publish([event])
        except (OutboxUnavailable, TimeoutError) as exc:
            log.warning("event %s not published: %s", event.type, str(exc) or "timed out")
            raise RequestError(
                ErrorCode.BUS_UNAVAILABLE,
                f"message bus unavailable: {stored}, its event is not published; retry",
            ) from exc

    async def create(self, users: list[int]) -> Chat:
        now = self._clock()
        chat = ChatView(new_id(), frozenset(new_chat_users(users)), int(now), now)
        await self._store.insert_chat(chat)  # pending: nobody is shown it yet
        try:
            event = ChatCreated(cid=chat.id, chat=EventChat.model_validate(chat.to_api()))
            await self._publish(event, "no chat")
        except RequestError:
            # Left in place it would show in its members' lists beside the chat the
            # client's retry creates. Removed, an event the producer had taken before the
            # timeout is still delivered (aiokafka keeps sending it, up to its request
            # timeout): live sessions then show a chat that reads answer 4040 for, until
            # their next chat list. Of a duplicate and a phantom, the phantom goes away.
            # Until 2026-12-08 the chat was not pending meanwhile: a member who listed it
            # could post to it, be answered 202, and the message was dead-lettered once
            # the chat was gone (found in review).
            await self._remove(chat.id)
            raise
        await self._open(chat.id)
        return chat.to_api()

    async def _open(self, cid: str) -> None:
        """Open a chat whose event is out, trying for REMOVE_WITHIN seconds. When the store
        keeps failing the chat stays pending (found by nobody, its event a phantom's) and
        the answer is a 5030."""
        try:
            await retry(
                lambda: self._store.open_chat(cid, self._clock()),
                retry_on=lambda exc: isinstance(exc, StorageUnavailable),
                backoff=Backoff(0.05, 0.25),
                deadline=time.monotonic() + REMOVE_WITHIN,
            )
        except WorkerError as exc:
            log.error("chat %s stays pending, its chat.created published: %s", cid, exc)
            raise

    async def _settled(self, cid: str) -> ChatView | None:
        """The chat, once its creation has ended: a pending one is read again until it is
        opened or removed, for `publish_timeout` + `settle_margin` seconds (SETTLE_MOST at
        most), after which it counts as not found. A live client told of a chat by its
        `chat.created` may read it before its creator's worker has opened it."""
        deadline = time.monotonic() + self._settle_within
        pause, longest = SETTLE_POLL
        while True:
            chat = await self._store.get_chat(cid)
            if chat is None or not chat.pending:
                return chat
            if chat.abandoned(self._clock()):
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, longest)

    async def _remove(self, cid: str) -> None:
        """Remove a chat whose creation failed, trying for REMOVE_WITHIN seconds. When the
        store fails too, the chat stays, without its chat.created, and that is logged: the
        answer stays the 5031 about the event (a 5030 in its place, "storage unavailable",
        hid that the chat exists; found in review)."""
        try:
            await retry(
                lambda: self._store.remove_chat(cid),
                retry_on=lambda exc: isinstance(exc, StorageUnavailable),
                backoff=Backoff(0.05, 0.25),
                deadline=time.monotonic() + REMOVE_WITHIN,
            )
        except WorkerError as exc:
            log.error(
                "chat %s stays stored without its chat.created event: removing it failed: %s",
                cid,
                exc,
            )

    async def get(self, cid: str, uid: int) -> Chat:
        chat = require_member(await self._settled(cid), uid)
        return chat.to_api(await self._store.read_marker(cid, uid))

    async def chats_of(self, uid: int, limit: int, cursor: ListCursor | None) -> Page[Chat]:
        """The user's chats, most recent activity first, paged over one snapshot."""
        now = self._clock()
        snapshot = now if cursor is None else cursor.snapshot
        if not -CURSOR_AHEAD <= now - snapshot <= CURSOR_TTL:
            # A cursor costs one look-back per chat that moved since its snapshot: an old
            # one (or one made up) would make a page cost thousands of reads.
            raise RequestError(
                ErrorCode.BAD_PAGING,
                f"cursor expired (a listing lasts {CURSOR_TTL // 60:g} minutes): "
                "list again from the first page",
            )
        mine, reads = await self._lists.lists(uid)
        chats = [c for c in mine if in_snapshot(c, snapshot)]
        moved = [c for c in chats if moved_since(c, snapshot)]
        then = await self._activities(moved, snapshot)
        ranked = [Ranked(Position(then.get(c.id, c.activity), c.id), c) for c in chats]
        after = None if cursor is None else cursor.after
        page, more = page_of_chats(ranked, snapshot, after, limit)
        return Page[Chat](
            data=[c.to_api(reads.get(c.id, 0)) for c in page],
            nextCursor=None if more is None else more.encode(),
        )

    async def followed(self, uid: int) -> Followed:
        """The chats a live stream of the user follows: cid -> lastSeq of its FOLLOW_MAX
        most active chats, most active first, ties by id as in the chat list (one read of
        the user's chats)."""
        # A pending chat is followed: a stream opened after its chat.created went by, and
        # before it opened, would never follow it otherwise (found in review); nothing is
        # posted to it before it opens.
        now = self._clock()
        chats = [c for c in await self._store.chats_of(uid) if not c.abandoned(now)]
        mine = sorted(chats, key=lambda c: Position(c.activity, c.id), reverse=True)
        return Followed(
            data={c.id: c.last_seq for c in mine[:FOLLOW_MAX]}, more=len(mine) > FOLLOW_MAX
        )

    async def _activities(self, chats: list[ChatView], snapshot: float) -> dict[str, float]:
        """Each chat's activity as of the snapshot (where it stood then), by chat id,
        LOOK_BACKS chats at a time; none starts after one failed."""

        async def activity(chat: ChatView) -> float:
            then = await self._store.activity_as_of(chat.id, chat.last_seq, snapshot)
            return chat.opened_at if then is None else then

        found = await bounded(chats, activity, LOOK_BACKS)
        return {chat.id: then for chat, then in zip(chats, found, strict=True)}

    async def add_members(self, cid: str, uid: int, users: list[int]) -> Chat:
        if (found := await self._store.get_chat(cid)) is not None and found.pending:
            require_member(await self._settled(cid), uid)  # then as any other chat
        result = await self._store.add_members(cid, uid, users, self._max_members)
        if result is None:  # unknown chat or not a member: tell which
            require_member(await self._store.get_chat(cid), uid)
            # The caller became a member in between (another request added them): members
            # are never removed, so the add now goes through.
            result = await self._store.add_members(cid, uid, users, self._max_members)
        if result is None:  # chats are never deleted, nor members removed
            raise RequestError(ErrorCode.NOT_FOUND, "chat not found")
        if isinstance(result, Full):
            raise result.refusal()
        chat, _ = result
        # Published for every request, also when nobody was new: a retry after the change
        # was stored and its event not published (Kafka down, the worker killed; the
        # gateway retries this PUT on another worker) would otherwise publish nothing,
        # and live sessions of the added users would never follow the chat.
        named = list(dict.fromkeys(users))
        event = MembersAdded(cid=cid, users=named, members=sorted(chat.users))
        await self._publish(event, "the members are added")
        return chat.to_api(await self._store.read_marker(cid, uid))

    async def messages(self, uid: int, cid: str, query: HistoryQuery) -> Page[Message]:
        """`limit` messages past the cursor, newest first; nextCursor is the id to pass as
        `before` (or `after`, paging forward) for the next page, null at the end."""
        chat = require_member(await self._settled(cid), uid)
        cursor = query.cursor
        if isinstance(cursor, str):  # a message id: where is it in this chat?
            cursor = await self._seq_of(cid, cursor)
        request = HistoryRequest(query.limit, cursor, query.direction)
        # A message shows once its chat counts it (seq <= lastSeq): one that is stored but
        # not counted yet (its batch in flight, or its worker died) may still be retracted
        # or stand after a hole, and shows once the worker (or the redelivery) counts it.
        seqs = wanted(request, chat.last_seq)
        found = [m for m in await self._store.history(cid, seqs.pages()) if m.seq in seqs]
        if missing := lacking(seqs, chat.last_seq, (m.seq for m in found)):
            found += await self._store.messages_at(cid, missing)
        page = sorted(found, key=lambda m: -m.seq)
        following = None
        if page and more_beyond(request, seqs, chat.last_seq):
            following = page[0].id if request.direction is Direction.NEWER else page[-1].id
        return Page[Message](data=[m.to_api() for m in page], nextCursor=following)

    async def _seq_of(self, cid: str, mid: str) -> int:
        """The seq of a message id used as a cursor (4005 when it is not in this chat)."""
        seq = await self._store.seq_of(cid, mid)
        if seq is None:
            raise RequestError(ErrorCode.BAD_PAGING, f"no message {mid} in this chat")
        return seq

    async def mark_read(self, cid: str, uid: int, seq: int) -> ReadMarker:
        """Move the caller's marker forward to `seq`, clamped to the chat's newest seq."""
        chat = require_member(await self._settled(cid), uid)
        target = min(seq, chat.last_seq)
        marker, _ = await self._store.move_read(cid, uid, target)
        # Published whenever the marker stands where the caller asked, also when it stood
        # there already: a retry after a failed publish (5031) must publish it then.
        if marker == target:
            await self._publish(ChatRead(cid=cid, uid=uid, seq=marker), "the marker is moved")
        return ReadMarker(cid=cid, seq=marker, unread=max(0, chat.last_seq - marker))
