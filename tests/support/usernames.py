"""Hypothesis strategies for usernames that look like, or collate like, a given name."""

from __future__ import annotations

from hypothesis import strategies as st

#: Inserted between letters: format characters and other default-ignorables (zero width
#: space/joiner/non-joiner, word joiner, soft hyphen, BOM, CGJ, variation selectors,
#: Mongolian FVS, Hangul filler, a tag character).
INVISIBLE = (
    "\u200b\u200c\u200d\u2060\u00ad\ufeff\u034f\ufe0f\ufe00\u180b\u3164\U000e0061\u2066\u202e"
)
#: Around the name: spaces of several kinds, NUL and other controls.
PADDING = (" ", "\t", "\n", "\u00a0", "\u3000", "\u2003", "\x00", "\x7f", "\u0085")
#: Combining accents: the accent-insensitive collation ignores them.
ACCENTS = ("\u0301", "\u0300", "\u0308", "\u0302", "\u030a", "\u0327", "\u0323")


def _fullwidth(ch: str) -> str:
    return chr(ord(ch) - 0x21 + 0xFF01) if "!" <= ch <= "~" else ch


def _math_bold(ch: str) -> str:
    if "a" <= ch <= "z":
        return chr(0x1D41A + ord(ch) - ord("a"))
    if "A" <= ch <= "Z":
        return chr(0x1D400 + ord(ch) - ord("A"))
    return ch


@st.composite
def _letter(draw: st.DrawFn, ch: str, invisible: bool = True) -> str:
    shape = draw(st.sampled_from([ch, ch.upper(), _fullwidth(ch), _fullwidth(ch.upper())]))
    shape = draw(st.sampled_from([shape, _math_bold(shape)])) if shape.isascii() else shape
    accent = draw(st.sampled_from(("", "", *ACCENTS)))
    before = draw(st.sampled_from(("", "", "", *INVISIBLE))) if invisible else ""
    return f"{before}{shape}{accent}"


@st.composite
def visible_variants(draw: st.DrawFn, name: str) -> str:
    """`name` re-cased, widened, bolded and accented, with nothing invisible and no padding."""
    return "".join(draw(_letter(ch, invisible=False)) for ch in name)


@st.composite
def variants(draw: st.DrawFn, name: str) -> str:
    """`name` with letters re-cased, widened, bolded, accented, interleaved with invisible
    characters and padded: every name the old collation or the eye takes for `name`."""
    letters = "".join(draw(_letter(ch)) for ch in name)
    left = draw(st.sampled_from(("", "", *PADDING)))
    right = draw(st.sampled_from(("", "", *PADDING)))
    return f"{left}{letters}{right}"


#: The variants issue 11 names, each of which signed in as "alice" while it was locked out.
ISSUE_VARIANTS = ("alice ", "\u00e1lice", "al\u200bice", "alice\u0000", "\uff41lice")
