"""`python -m gateway.users rename <id> <new name>`: an operator's command.

Renames an account with the canonical form sign-in looks it up by (NFKC, case-folded,
without invisible characters; `gateway/domain/usernames.py`), refusing what sign-up
refuses. It is how an account that migration 2 left without a canonical form (two old
names with one form: docs/gateway.md) is given one it can sign in with. It reads the
gateway's MySQL settings (MYSQL_*, DIALOGUE_ENV) from the environment, as the gateway
does, and no other: the gateway's secrets (JWT_SECRET, ENTRYPOINT_TOKEN) need not be set.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Literal

from pydantic import SecretStr, ValidationError, model_validator

from contracts.requests import RequestProblem, user_id
from gateway.adapters.mysql_users import MySQLUserStore, mysql_pool
from gateway.domain.usernames import username
from gateway.errors import GatewayError
from gateway.settings import LOCAL_MYSQL_PASSWORD, GatewaySettings, mysql_password_problem
from platform_common.settings_base import BoundedSettings
from platform_common.settings_errors import invalid_settings

#: Exit codes: done; the store refused it (taken, no such user, unreachable); bad input.
DONE, REFUSED, INVALID = 0, 1, 2


def _gateways(name: str) -> Any:
    """The gateway's own definition of setting `name`: its default, bounds and text."""
    return GatewaySettings.model_fields[name]


class UserStoreSettings(BoundedSettings):
    """The gateway's settings this command uses, read and checked as the gateway does."""

    model_config = GatewaySettings.model_config  # case, extra variables, no inf/nan

    dialogue_env: Literal["local", "production"] = _gateways("dialogue_env")
    mysql_host: str = _gateways("mysql_host")  # the gateway's HostName check comes with it
    mysql_port: int = _gateways("mysql_port")
    mysql_user: str = _gateways("mysql_user")
    mysql_password: SecretStr | None = _gateways("mysql_password")
    mysql_database: str = _gateways("mysql_database")
    mysql_timeout: float = _gateways("mysql_timeout")
    mysql_connect_wait: float = _gateways("mysql_connect_wait")

    @model_validator(mode="after")
    def _no_default_password_outside_local(self) -> UserStoreSettings:
        if self.dialogue_env != "local" and (
            problem := mysql_password_problem(self.mysql_password)
        ):
            raise ValueError(
                f"refusing DIALOGUE_ENV={self.dialogue_env}: {problem} "
                "(set DIALOGUE_ENV=local only for development)"
            )
        return self

    def password(self) -> str:
        """MYSQL_PASSWORD, or (unset or empty, local mode only) the local default."""
        given = self.mysql_password.get_secret_value() if self.mysql_password else ""
        return given or LOCAL_MYSQL_PASSWORD


async def rename(settings: UserStoreSettings, user_id: int, new_name: str) -> str:
    """The name as stored; GatewayError when it cannot be."""
    name = username(new_name)
    async with mysql_pool(
        host=settings.mysql_host,
        port=settings.mysql_port,
        user=settings.mysql_user,
        password=settings.password(),
        database=settings.mysql_database,
        size=1,
        connect_wait=settings.mysql_connect_wait,
    ) as pool:
        await MySQLUserStore(pool, settings.mysql_timeout).rename(user_id, name)
    return name.display


def _user_id(raw: str) -> int:
    """ASCII digits, 1 .. 2**63-1, as the API takes it: int() would also read "1_0" as
    10, Arabic-Indic digits and padding, and rename another account than meant."""
    try:
        return user_id(raw)
    except RequestProblem:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a user id (1 .. 2**63-1 in ASCII digits)"
        ) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.users", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    renaming = commands.add_parser("rename", help="give an account a new username")
    renaming.add_argument("user_id", type=_user_id, help="the account's id (users.id)")
    renaming.add_argument("name", help="its new username, as sign-up would accept it")
    args = parser.parse_args(argv)
    try:
        settings = UserStoreSettings()
    except ValidationError as exc:
        print(invalid_settings("gateway.users", exc), file=sys.stderr)
        return INVALID
    try:
        stored = asyncio.run(rename(settings, args.user_id, args.name))
    except GatewayError as exc:
        print(f"gateway.users: user {args.user_id} not renamed: {exc.message}", file=sys.stderr)
        return INVALID if exc.code.value.startswith("400") else REFUSED
    except RuntimeError as exc:  # MySQL unreachable, refusing the login, or not migrated
        print(f"gateway.users: {exc}", file=sys.stderr)
        return REFUSED
    print(f"user {args.user_id} is now {stored!r}")
    return DONE


if __name__ == "__main__":
    sys.exit(main())
