"""What every service's settings share: each number read from the environment fits a
signed 32-bit integer, and each text is valid UTF-8.

Numbers end up where Python's unbounded integers do not fit: a socket option
(`STREAM_SEND_BUFFER`), a Kafka request field (`TOPIC_PARTITIONS` is an int32), a JSON
body (`JWT_TTL` + now is sent as `expiresAt`, and orjson refuses past 64 bits). Found in
review: such values passed the settings and then failed each request, or the start, with
a traceback. A bound per field would be forgotten for the next one; this one covers every
field, also those added later. No setting needs more: 2,147,483,647 seconds are 68 years,
bytes 2 GiB.

Python reads environment bytes that are not UTF-8 as lone surrogates, which pass as text
until something encodes them: a MYSQL_USER such as that failed the gateway's start with a
traceback from deep in the MySQL driver (found in review). They are refused when read.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings

NUMBER_MIN, NUMBER_MAX = -(2**31), 2**31 - 1


class BoundedSettings(BaseSettings):
    """Base of the services' settings: refuses any number outside NUMBER_MIN..NUMBER_MAX
    and any text that is not valid UTF-8, naming the setting (fields may have tighter
    bounds of their own). The message never quotes the value: it may be a secret."""

    @field_validator("*", mode="after")
    @classmethod
    def _within_bounds(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value > NUMBER_MAX:
                raise ValueError(f"at most {NUMBER_MAX} (a signed 32-bit number)")
            if value < NUMBER_MIN:
                raise ValueError(f"at least {NUMBER_MIN} (a signed 32-bit number)")
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and not _is_utf8(text):
            raise ValueError(
                "not valid UTF-8 (the environment holds bytes that are not): set it again"
            )
        return value


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True
