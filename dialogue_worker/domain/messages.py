"""A stored message as the read API returns it."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.api import Message


@dataclass(frozen=True)
class MessageView:
    id: str
    cid: str
    uid: int
    text: str
    created_at: int | float

    def to_api(self) -> Message:
        return Message(
            id=self.id, cid=self.cid, uid=self.uid, createdAt=self.created_at, text=self.text
        )
