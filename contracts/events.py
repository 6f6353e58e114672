"""The events topic: what happened to chats, for consumers such as live delivery.

`dialogue.events` (key = chat id) carries versioned JSON events, published by the
workers: `message.created` after a message is durably stored (also again for a
redelivered record), `chat.created`, `chat.members_added` and `chat.read`. Delivery is
at-least-once: consumers deduplicate `message.created` by (cid, seq). The JSON Schema is
published as contracts/schema/dialogue.events.v1.json (generated from these models).
"""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from contracts.api import Chat, Message, UserId
from contracts.records import INT64_MAX, UID_MAX, integral

EVENTS_TOPIC = "dialogue.events"
#: The lengths as well as the pattern: Python's `re` (and so the `jsonschema` library)
#: lets `$` match before a final newline, which would pass "<24 hex>\n".
ObjectIdHex = Annotated[str, Field(pattern=r"^[0-9a-f]{24}$", min_length=24, max_length=24)]


class _Event(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_serialization_defaults_required=True
    )

    v: Literal[1] = 1
    cid: ObjectIdHex = Field(description="the chat; also the record key")

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    def key(self) -> bytes:
        return self.cid.encode()


class EventMessage(Message):
    """A message as an event carries it: stored, so its seq is known (never null)."""

    model_config = ConfigDict(
        frozen=True, from_attributes=True, json_schema_serialization_defaults_required=True
    )

    seq: int = Field(ge=1, le=INT64_MAX, description="1, 2, 3 ... per chat")


class EventChat(Chat):
    """A chat as an event carries it: every field present (none has a default there)."""

    model_config = ConfigDict(
        frozen=True, from_attributes=True, json_schema_serialization_defaults_required=True
    )


class MessageCreated(_Event):
    """A message is stored with its seq (published after the write, before the commit)."""

    type: Literal["message.created"] = "message.created"
    seq: int = Field(ge=1, le=INT64_MAX)
    message: EventMessage


class ChatCreated(_Event):
    type: Literal["chat.created"] = "chat.created"
    chat: EventChat


class MembersAdded(_Event):
    type: Literal["chat.members_added"] = "chat.members_added"
    users: list[UserId] = Field(description="the users the change named (members now)")
    members: list[UserId] = Field(description="every member after it")


class ChatRead(_Event):
    """A user's read marker moved forward (on any of their devices)."""

    type: Literal["chat.read"] = "chat.read"
    uid: int = Field(ge=1, le=UID_MAX)
    seq: int = Field(ge=0, le=INT64_MAX)


#: Every event the platform publishes.
ChatEvent = MessageCreated | ChatCreated | MembersAdded | ChatRead
Event = Annotated[ChatEvent, Field(discriminator="type")]
EVENT = TypeAdapter(Event)


def decode_event(value: bytes) -> ChatEvent:
    """Parse one event value (ValueError, a pydantic.ValidationError when it is JSON,
    when it is not one).

    Strictly, as the published schema reads it: `"uid": true` or `"users": ["1"]` are
    not events (lax parsing made them user 1); a number is an integer where it has no
    fraction, as JSON Schema's "integer" and the records' fields take it (`3.0`, `1e2`).
    """
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if isinstance(parsed, dict) and "v" not in parsed:  # the models default it for writers
        raise ValueError("not an event: v is missing (the schema requires it)")
    if isinstance(parsed, dict) and isinstance(parsed["v"], bool):  # Literal[1] takes True
        raise ValueError("not an event: v must be 1 (the schema's const), not a boolean")
    try:
        whole = _integral(parsed)
    except RecursionError:  # orjson nests 1024 deep, further than Python recurses here
        raise ValueError("not an event: nested too deep") from None
    event = EVENT.validate_python(whole, strict=True)
    _complete(event)
    return event


def _complete(model: BaseModel) -> None:
    """ValueError when `model`, or a model in it, lacks a field: the schema requires every
    one, and the models' defaults (for writers) filled them in (`chat.lastSeq` 0, found in
    review)."""
    missing = sorted(set(type(model).model_fields) - model.model_fields_set)
    if missing:
        raise ValueError(
            f"not an event: {type(model).__name__} lacks {', '.join(missing)} "
            "(the schema requires it)"
        )
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            _complete(value)


def _integral(value: object) -> object:
    """`value` with `integral` applied to every number in it: no event field is a float."""
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return integral(value)
