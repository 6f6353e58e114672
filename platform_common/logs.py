"""One log format for every service: a JSON object per line on stderr.

Every line has `ts` (ISO 8601, UTC, milliseconds), `level`, `logger`, `msg` and
`request_id` (null outside a request); anything passed with `extra=` is added, so the
worker's record-related lines carry `topic`, `partition` and `offset`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Annotated, Literal

import orjson
from pydantic import BeforeValidator

#: A settings field of the root log level, in any case.
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR"],
    BeforeValidator(lambda value: value.upper() if isinstance(value, str) else value),
]

#: The id of the request being handled (set by each service's HTTP edge).
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

#: Characters of a client-supplied string (path, header, name) a log line keeps.
CLIP = 200

#: Characters JSON may carry unescaped that still end or disguise a line: what
#: `str.splitlines()` splits at beyond the C0 controls orjson escapes (U+0085, U+2028,
#: U+2029), the other C1 controls (terminal escapes start with U+009B), and the
#: bidirectional controls that reorder what a viewer shows. Found in review: a request
#: path or a Kafka header carrying them split one line into several for the tools that
#: read these logs line by line. Escaped as \uXXXX, inside the JSON strings they are in.
_UNSAFE = {
    c: f"\\u{c:04x}"
    for c in [
        *range(0x80, 0xA0),
        0x061C,
        0x200E,
        0x200F,
        *range(0x2028, 0x202F),
        *range(0x2066, 0x206A),
    ]
}

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def clip(text: str, limit: int = CLIP) -> str:
    """`text` cut to `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text) - limit} more)"


def partition_fields(topic: str, partition: int, offset: int | None = None) -> dict[str, object]:
    """The `extra=` fields of a line about a partition: `topic`, `partition`, and `offset`
    when one offset is concerned (the first, for a range: the message names the range)."""
    fields: dict[str, object] = {"topic": topic, "partition": partition}
    if offset is not None:
        fields["offset"] = offset
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": request_id.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        try:
            line = orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:
            # What orjson will not encode (a lone surrogate, an integer past 64 bits):
            # each value as its repr, escaped, rather than the line lost to logging's
            # "--- Logging error ---".
            safe = {key: _encodable(value) for key, value in entry.items()}
            line = orjson.dumps(safe, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        return line.translate(_UNSAFE)


def _encodable(value: object) -> object:
    """`value` if orjson encodes it, else its repr with anything not UTF-8 escaped."""
    try:
        orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return repr(value).encode("utf-8", "backslashreplace").decode()
    return value


def setup_logging(level: str, quiet: Iterable[str] = ()) -> None:
    """Route every logger to JSON lines on stderr; `quiet` loggers log warnings and up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in quiet:
        logging.getLogger(name).setLevel(max(logging.getLevelName(level.upper()), logging.WARNING))
