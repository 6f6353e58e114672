"""The Kafka message record: the public, versioned value of `dialogue.messages`.

External producers write it too, so it is validated strictly on the consumer side;
contracts/schema/dialogue.messages.v1.json is generated from MessageRecord.
"""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

TOPIC = "dialogue.messages"
DLQ_TOPIC = "dialogue.messages.dlq"
TEXT_MAX = 4096  # characters
RECORD_MAX_BYTES = 64 * 1024

ObjectIdHex = Annotated[str, Field(pattern=r"^[0-9a-f]{24}$", description="ObjectId, 24 hex")]


class MessageRecord(BaseModel):
    """One chat message as produced to `dialogue.messages` (key = cid)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, title="dialogue.messages record v1", strict=True
    )

    v: Literal[1] = Field(description="schema version")
    id: ObjectIdHex = Field(description="message id; becomes the MongoDB _id")
    cid: ObjectIdHex = Field(description="chat id; also the record key")
    uid: Annotated[StrictInt, Field(ge=1, description="author's user id")]
    text: Annotated[str, Field(min_length=1, max_length=TEXT_MAX, pattern=r"\S")]
    createdAt: Annotated[StrictInt, Field(gt=0)] | Annotated[float, Field(gt=0)] = Field(
        description="unix time in seconds"
    )

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump())

    def key(self) -> bytes:
        return self.cid.encode()


class InvalidRecord(ValueError):
    """A record that cannot be accepted; reason is a short machine-friendly text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_record(value: bytes | None) -> MessageRecord:
    """Parse and validate a raw Kafka value, or raise InvalidRecord with the reason."""
    if value is None:
        raise InvalidRecord("empty value")
    if len(value) > RECORD_MAX_BYTES:
        raise InvalidRecord(f"record larger than {RECORD_MAX_BYTES} bytes")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRecord("record is not a JSON object")
    if data.get("v") != 1:
        raise InvalidRecord(f"unsupported schema version: {data.get('v')!r}")
    try:
        return MessageRecord.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise InvalidRecord(f"{where}: {first['msg']}") from None
