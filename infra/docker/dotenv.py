"""`python -m infra.docker.dotenv [.env]`: create .env from .env.example with random secrets.

An existing file is left alone (its secrets protect data already on the volumes).
"""

from __future__ import annotations

import argparse
import secrets
import sys
import uuid
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.docker.dotenv",
        description="Create .env from .env.example with random secrets (an existing file "
        "is left as it is).",
    )
    parser.add_argument("path", nargs="?", type=Path, default=REPO_ROOT / ".env")
    target: Path = parser.parse_args(argv).path
    if target.exists():
        print(f"{target} exists; left as it is")
        return 0
    try:
        target.write_text(render(EXAMPLE.read_text()))
        target.chmod(0o600)
    except OSError as exc:
        print(f"infra.docker.dotenv: cannot write {target}: {exc.strerror}", file=sys.stderr)
        return 1
    ignored = target.resolve() == (REPO_ROOT / ".env").resolve()
    print(
        f"{target} written with random secrets (keep it"
        + ("; it is git-ignored)" if ignored else "; never commit it)")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
