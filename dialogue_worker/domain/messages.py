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
    created_at: float
    seq: int
    at: float = 0.0  # when the worker stored it (its clock)

    def to_api(self) -> Message:
        return Message(
            id=self.id,
            cid=self.cid,
            uid=self.uid,
            createdAt=int(self.created_at),
            text=self.text,
            seq=self.seq,
        )
