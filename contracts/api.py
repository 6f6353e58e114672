"""JSON shapes of the public API, also returned by the worker's internal API."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class Chat(BaseModel):
    object: Literal["chat"] = "chat"
    id: str
    users: list[int]
    createdAt: int


class Message(BaseModel):
    object: Literal["message"] = "message"
    id: str
    cid: str
    uid: int
    createdAt: int | float
    text: str


class Page(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    nextCursor: str | None = None
