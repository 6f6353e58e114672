"""How a command says its settings are invalid: each setting with its reason, one a line,
and never pydantic's copy of the value given. pydantic's own text repeats the input, and
for a rule over several settings that input is every setting read, secrets and
credentials included. A reason may quote a value it is about (an address with a typo),
never a secret, and a URL without its user and password."""

from __future__ import annotations

from pydantic import ValidationError


def settings_problems(error: ValidationError) -> list[str]:
    """`<setting>: <reason>` per problem (`settings:` for a rule over several)."""
    return [
        f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg'].removeprefix('Value error, ')}"
        for e in error.errors(include_url=False, include_context=False, include_input=False)
    ]


def invalid_settings(program: str, error: ValidationError) -> str:
    """What `program` prints before it exits: a heading line, then the problems."""
    lines = [f"{program}: invalid configuration", *(f"  {p}" for p in settings_problems(error))]
    return "\n".join(lines)
