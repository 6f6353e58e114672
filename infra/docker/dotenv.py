"""`python -m infra.docker.dotenv [.env]`: create .env from .env.example with random secrets.

An existing file is left alone (its secrets protect data already on the volumes). A new
one is created readable by its owner only (0600) from the first byte on.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / ".env.example"
#: Variables that get a fresh random value when the example leaves them empty.
SECRETS = ("JWT_SECRET", "ENTRYPOINT_TOKEN", "MYSQL_ROOT_PASSWORD", "MYSQL_PASSWORD", "ADMIN_TOKEN")
#: Consul ACL tokens: Consul wants their SecretIDs as UUIDs (122 random bits each).
UUID_SECRETS = (
    "CONSUL_MANAGEMENT_TOKEN",
    "CONSUL_AGENT_TOKEN",
    "CONSUL_WORKER_TOKEN",
    "CONSUL_GATEWAY_TOKEN",
)


def parse(text: str) -> dict[str, str]:
    """The NAME=value lines of a .env file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and "=" in stripped:
            name, _, value = stripped.partition("=")
            values[name.strip()] = value.strip()
    return values


def render(example: str) -> str:
    """The example with every empty secret filled: 32 random bytes (base64url), or a
    random UUID for the Consul tokens."""
    lines = []
    for line in example.splitlines():
        name, sep, value = line.partition("=")
        if sep and not value.strip():
            if name.strip() in SECRETS:
                line = f"{name}={secrets.token_urlsafe(32)}"
            elif name.strip() in UUID_SECRETS:
                line = f"{name}={uuid.uuid4()}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def write_private(target: Path, make: Callable[[], str]) -> bool:
    """Create `target` with mode 0600 and write `make()` to it; False, and nothing done, if
    the name exists (a file, a directory or a symbolic link, which is not followed).

    The mode is set at creation, so the secrets are never readable by others, not even
    for a moment, whatever the umask; a failure after creating removes the partial file."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)  # a umask can only have narrowed it: 0600 exactly
            out.write(make())
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.docker.dotenv",
        description="Create .env from .env.example with random secrets (an existing file "
        "is left as it is).",
    )
    parser.add_argument("path", nargs="?", type=Path, default=REPO_ROOT / ".env")
    target: Path = parser.parse_args(argv).path
    try:
        created = write_private(target, lambda: render(EXAMPLE.read_text(encoding="utf-8")))
    except OSError as exc:
        print(f"infra.docker.dotenv: cannot write {target}: {exc.strerror}", file=sys.stderr)
        return 1
    if not created:
        print(f"{target} exists; left as it is")
        return 0
    ignored = target.resolve() == (REPO_ROOT / ".env").resolve()
    print(
        f"{target} written with random secrets (keep it"
        + ("; it is git-ignored)" if ignored else "; never commit it)")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
