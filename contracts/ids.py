"""Identifiers: chat and message ids are MongoDB ObjectIds in 24-char lowercase hex."""

from __future__ import annotations

import re

from bson import ObjectId

_HEX24 = re.compile(r"^[0-9a-f]{24}$")


def is_object_id(value: object) -> bool:
    """True for a 24-char lowercase hex string (the wire form of an ObjectId)."""
    return isinstance(value, str) and _HEX24.fullmatch(value) is not None


def new_id() -> str:
    """A fresh, time-ordered ObjectId in hex."""
    return str(ObjectId())
