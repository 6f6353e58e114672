"""The one log format: a JSON object per line with ts, level, logger, msg, request_id, and
whatever was passed with `extra=` (the worker's topic/partition/offset)."""

from __future__ import annotations

import logging
import sys
from datetime import datetime

import orjson
from hypothesis import given
from hypothesis import strategies as st

from platform_common.logs import JsonFormatter, partition_fields, request_id


def _line(msg: str = "hello %s", *args: object, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("dialogue_worker.x", logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry: dict[str, object] = orjson.loads(line)
    return entry


def test_every_line_has_the_fixed_keys() -> None:
    entry = _line("hello %s", "world")
    assert {"ts", "level", "logger", "msg", "request_id"} <= set(entry)
    assert (entry["level"], entry["logger"], entry["msg"]) == (
        "warning",
        "dialogue_worker.x",
        "hello world",
    )
    assert entry["request_id"] is None  # outside a request
    assert datetime.fromisoformat(str(entry["ts"])).utcoffset() is not None


def test_the_request_id_of_the_request_being_handled_is_on_the_line() -> None:
    token = request_id.set("req-123")
    try:
        assert _line()["request_id"] == "req-123"
    finally:
        request_id.reset(token)


def test_topic_partition_and_offset_passed_as_extra_are_on_the_line() -> None:
    entry = _line(**partition_fields("dialogue.messages", 3, 1234))
    assert (entry["topic"], entry["partition"], entry["offset"]) == ("dialogue.messages", 3, 1234)
    entry = _line(**partition_fields("dialogue.messages", 3))  # a partition, no one offset
    assert (entry["topic"], entry["partition"]) == ("dialogue.messages", 3)
    assert "offset" not in entry


def test_other_extras_are_kept_and_exceptions_are_formatted() -> None:
    record = logging.LogRecord("gateway", logging.ERROR, __file__, 1, "boom", (), None)
    try:
        raise ValueError("bad")
    except ValueError:
        record.exc_info = sys.exc_info()
    record.status = 503
    entry = orjson.loads(JsonFormatter().format(record))
    assert entry["status"] == 503
    assert "ValueError: bad" in entry["exc"]


@given(
    st.text(),
    st.one_of(
        st.text(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.dictionaries(st.integers() | st.text(max_size=3), st.text(max_size=3), max_size=3),
        st.lists(st.integers(min_value=-(2**70), max_value=2**70), max_size=3),
    ),
)
def test_any_message_and_extra_make_one_line(text: str, value: object) -> None:
    """A lone surrogate, an integer past 64 bits or a dict with other keys than strings
    made orjson raise: logging printed "--- Logging error ---" and the line was lost."""
    entry = _line("said %s", text, said=value)
    assert {"ts", "level", "logger", "msg", "request_id", "said"} <= set(entry)
    assert isinstance(entry["msg"], str) and entry["msg"].startswith(("said ", "'said "))


LINE_BREAKERS = "\x85\u2028\u2029\x1c\x1d\x1e\r\n\x0b\x0c"
DISGUISES = "\x9b\u202e\u202d\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


@given(st.text(st.characters() | st.sampled_from(list(LINE_BREAKERS + DISGUISES))))
def test_no_text_breaks_a_line_or_hides_what_it_says(text: str) -> None:
    """Found in review: orjson writes U+2028, U+2029, U+0085 and the C1 and bidi controls
    as they are; a request path or a Kafka header with them split one JSON line into
    several for every tool reading the logs line by line (`splitlines()`), or reordered
    what a terminal shows. They are escaped, and the line reads back to the same text."""
    record = logging.LogRecord("gateway.x", logging.INFO, __file__, 1, "path %s", (text,), None)
    record.__dict__["header"] = text
    line = JsonFormatter().format(record)
    assert len(line.splitlines()) == 1
    assert not set(line) & set(LINE_BREAKERS + DISGUISES)
    assert not any(0x80 <= ord(c) <= 0x9F for c in line)
    entry = orjson.loads(line)
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in text):  # else written as its repr
        assert entry["msg"] == f"path {text}" and entry["header"] == text
