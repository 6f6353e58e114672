"""Identifiers: chat and message ids are MongoDB ObjectIds in 24-char lowercase hex."""

from __future__ import annotations

import itertools
import re
import secrets
import threading
import time
from typing import TypeGuard

from bson import ObjectId

_HEX24 = re.compile(r"^[0-9a-f]{24}$")

# A standard ObjectId ends in a per-process constant and a counter, so one observed id
# predicts the next ones. Ours: 4 bytes of seconds, a 3-byte per-process counter (ids
# from one process keep their order within a second) and 5 random bytes per id.
_COUNTER = itertools.count(secrets.randbelow(1 << 23))
_LOCK = threading.Lock()


def is_object_id(value: object) -> TypeGuard[str]:
    """True for a 24-char lowercase hex string (the wire form of an ObjectId)."""
    return isinstance(value, str) and _HEX24.fullmatch(value) is not None


def new_id() -> str:
    """A fresh ObjectId in hex: time-ordered, and not predictable from an earlier one."""
    with _LOCK:
        count = next(_COUNTER) & 0xFFFFFF
    raw = int(time.time()).to_bytes(4, "big") + count.to_bytes(3, "big") + secrets.token_bytes(5)
    return str(ObjectId(raw))
