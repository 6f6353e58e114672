"""Usernames: the rules a name must meet, and its canonical form, computed only here.

Two names are the same account when their canonical forms are equal. The canonical
form is NFKC, case-folded, without format (Cf) or default-ignorable characters, and
stripped; the database stores it in its own binary-collated, unique column, so look-up,
uniqueness and sign-in throttling all agree with this module and not with a collation.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import regex
from confusable_homoglyphs import categories

from contracts.errors import ErrorCode
from gateway.errors import GatewayError

USERNAME_MIN, USERNAME_MAX = 5, 30
#: Longest name sign-in looks at; anything longer cannot be a username and is refused.
SIGN_IN_MAX = 256

_INVISIBLE = regex.compile(r"[\p{Cf}\p{Default_Ignorable_Code_Point}]")
#: Symbols and fillers drawn as blank space, which no Unicode property marks as such
#: (the Hangul fillers are default-ignorable too; listed so the rule does not rest on it).
BLANK_SYMBOLS = frozenset(
    "\u2800"  # BRAILLE PATTERN BLANK
    "\U0001d159"  # MUSICAL SYMBOL NULL NOTEHEAD
    "\U00016fe4"  # KHITAN SMALL SCRIPT FILLER
    "\u115f\u1160\u3164\uffa0"  # HANGUL CHOSEONG, JUNGSEONG, (HALFWIDTH) FILLER
)
_MARKS = frozenset({"Mn", "Me"})
#: Scripts that never decide whether a name mixes scripts (digits, punctuation, accents).
_NEUTRAL = frozenset({"COMMON", "INHERITED"})
#: Script sets that one writing system uses together (UTS #39, "highly restrictive").
_WRITING_SYSTEMS = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)


@dataclass(frozen=True)
class Username:
    """A name as typed (shown back to people) and its canonical form (the account's key)."""

    display: str
    canonical: str


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def canonical(name: str) -> str:
    """The canonical form: NFKC, case-folded, without Cf/default-ignorables, stripped.

    Idempotent: canonical(canonical(x)) == canonical(x).
    """
    folded = _nfkc(_nfkc(name).casefold())
    visible = _INVISIBLE.sub("", folded)
    return _nfkc(visible.casefold()).strip()


def throttle_key(canonical_name: str) -> str:
    """The key failed sign-ins are counted under: the canonical form without accents.

    Names that differ only in diacritics ("alice", "álice") are separate accounts that
    share one lockout, as they shared one row under the accent-insensitive collation this
    replaces. The throttle still records each failure under its canonical name, so a
    right password for "álice" clears none of the failures of "alice".
    """
    decomposed = unicodedata.normalize("NFD", canonical_name)
    bare = "".join(ch for ch in decomposed if unicodedata.category(ch) not in _MARKS)
    return unicodedata.normalize("NFC", bare)


def scripts(text: str) -> frozenset[str]:
    """The scripts a text is written in, without the neutral ones (digits, marks)."""
    return frozenset(categories.unique_aliases(text)) - _NEUTRAL


def mixes_scripts(text: str) -> bool:
    """True for text that mixes scripts no single writing system mixes (Latin + Cyrillic)."""
    used = scripts(text)
    return len(used) > 1 and not any(used <= system for system in _WRITING_SYSTEMS)


def _invalid(message: str) -> GatewayError:
    return GatewayError(ErrorCode.MALFORMED, message)


def refusal(name: str) -> str | None:
    """Why no account can have this name (sign-in refuses it without a look-up), or None.

    Sign-up applies these rules and those of `sign_up_refusal`, which came later.
    """
    if not USERNAME_MIN <= len(name) <= USERNAME_MAX:
        return f"username must be {USERNAME_MIN}-{USERNAME_MAX} characters"
    if name != name.strip() or any(
        unicodedata.category(ch).startswith(("C", "Z")) and ch != " " for ch in name
    ):
        return "username must not start or end with spaces or contain control characters"
    if _INVISIBLE.search(name):
        return "username must not contain invisible characters"
    key = canonical(name)
    if not USERNAME_MIN <= len(key) <= USERNAME_MAX:
        return f"username must be {USERNAME_MIN}-{USERNAME_MAX} characters once normalised"
    if mixes_scripts(key):
        return "username must not mix scripts (such as Latin and Cyrillic letters)"
    return None


def sign_up_refusal(name: str) -> str | None:
    """Why sign-up (or a rename) refuses this name, or None when it may be a new username.

    Beyond `refusal`: no run of spaces and no blank symbol, since both draw like a name
    with one space ("john  smith" looks like "john smith" in a browser). These came after
    accounts could be made with such names, so sign-in and look-ups still accept them and
    `canonical` keeps them: an existing account's identity does not change.
    """
    if any(ch in BLANK_SYMBOLS for ch in name):
        return "username must not contain blank symbols (such as U+2800 braille blank)"
    if "  " in name:
        return "username must not contain two spaces in a row"
    return refusal(name)


def username(name: str) -> Username:
    """A name sign-up accepts, with its canonical form (4000 with the reason otherwise)."""
    reason = sign_up_refusal(name)
    if reason is not None:
        raise _invalid(reason)
    return Username(name, canonical(name))


def sign_in_name(name: str) -> Username:
    """The name of a sign-in: refused (4000) when no account can have it, before any look-up.

    Judged as typed and in its composed form (NFC), refused only when both are: a name
    typed decomposed ("e" and a combining accent for "é") is longer than the one its
    account was made with, and a 30-character name was refused as one no account can
    have (found in review); and NFC lengthens a few names (U+0344 becomes two marks)."""
    if len(name) > SIGN_IN_MAX or (
        refusal(name) is not None and refusal(unicodedata.normalize("NFC", name)) is not None
    ):
        raise _invalid("no account can have this username")
    return Username(name, canonical(name))
