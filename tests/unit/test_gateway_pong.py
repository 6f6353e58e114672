"""How the gateway reads a worker's `/ping` body (pong_serves_reads). A worker answers
200 whatever its health, so the body alone says whether it serves reads: a JSON object
whose `status` is `passing` or `warning`, and nothing else."""

from __future__ import annotations

import json

import orjson
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.adapters.workers import pong_serves_reads

SERVING = ("passing", "warning")
#: Levels of lists and objects a deep value gets at most. A worker encodes with orjson,
#: which writes at most 254 levels; the few left over are for the object around it.
DEEPEST = 200

INTEGERS = st.integers(-(2**63), 2**63 - 1)  # what orjson encodes
SCALARS = (
    st.none()
    | st.booleans()
    | INTEGERS
    | st.floats(allow_nan=False, allow_infinity=False)  # NaN, Infinity: not JSON
    | st.text()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def deep_values(draw: st.DrawFn) -> object:
    """A scalar inside up to DEEPEST levels of one-item lists and one-key objects, in a
    repeating pattern of both."""
    value: object = draw(SCALARS)
    key = draw(st.text(max_size=3))
    pattern = draw(st.lists(st.booleans(), min_size=1, max_size=4))
    for level in range(draw(st.integers(0, DEEPEST))):
        value = {key: value} if pattern[level % len(pattern)] else [value]
    return value


JSON = VALUES | deep_values()
MISSING = object()  # a pong without a `status`
NOT_SERVING = (
    st.sampled_from(["critical", "Passing", "passing ", "warn", ""])
    | st.text()
    | st.none()
    | st.booleans()
    | INTEGERS
    | JSON
)


@st.composite
def pongs(draw: st.DrawFn) -> dict[str, object]:
    """An object as a `/ping` body might be: a `status` serving reads, another one, or
    none, among other keys."""
    pong = draw(st.dictionaries(st.text(), JSON, max_size=4))
    # A third each (`a | b | c` would weigh NOT_SERVING's many alternatives apiece).
    kind = draw(st.sampled_from([st.sampled_from(SERVING), NOT_SERVING, st.just(MISSING)]))
    status = draw(kind)
    if status is not MISSING:
        pong["status"] = status
    return pong


def _encode(doc: object, how: str) -> bytes:
    """`doc` as a worker writes it (orjson), indented, or as Python's json module does
    (non-ASCII characters as \\u escapes)."""
    if how == "compact":
        return orjson.dumps(doc)
    if how == "indented":
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2)
    return json.dumps(doc).encode()


ENCODINGS = st.sampled_from(["compact", "indented", "stdlib"])


def _serves(doc: object) -> bool:
    """The rule, on the document itself rather than on a parse of its bytes."""
    return isinstance(doc, dict) and doc.get("status") in SERVING


@given(pong=pongs(), how=ENCODINGS)
def test_an_object_serves_reads_when_its_status_is_passing_or_warning(
    pong: dict[str, object], how: str
) -> None:
    assert pong_serves_reads(_encode(pong, how)) == _serves(pong)


@given(doc=JSON, how=ENCODINGS)
def test_any_other_json_value_does_not_serve_reads(doc: object, how: str) -> None:
    assert pong_serves_reads(_encode(doc, how)) == _serves(doc)


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """A pong that would serve reads, cut short or with bytes before or after it: the
    nearest a body comes to serving reads without being JSON."""
    pong = draw(pongs()) | {"status": draw(st.sampled_from(SERVING))}
    body = _encode(pong, draw(ENCODINGS))
    junk = draw(st.binary(min_size=1, max_size=8))
    return draw(
        st.sampled_from([body[: draw(st.integers(0, len(body) - 1))], junk + body, body + junk])
    )


def _is_json(body: bytes) -> bool:
    """Whether Python's json module takes `body` as UTF-8 JSON. It takes more than
    RFC 8259 (NaN, Infinity) and more than orjson (lone \\ud800-style escapes, numbers
    past a double, any depth Python's stack allows), so what it refuses is not JSON."""
    try:
        json.loads(body.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
        return False
    return True


@given(body=st.binary(max_size=200) | mangled())
def test_a_body_that_is_not_json_does_not_serve_reads(body: bytes) -> None:
    assume(not _is_json(body))
    assert pong_serves_reads(body) is False
