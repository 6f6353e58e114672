"""The soak's settings: one object, read once from the command line, whose defaults come
from SOAK_* environment variables (so `make soak SOAK_MINUTES=5 SOAK_POSTS=40` works)."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

from infra.dev.settings import MAX_WORKERS, DevSettings

REPO = Path(__file__).resolve().parents[2]
#: The first and last windows compared (p99, RSS after warm-up) in a run of 30 minutes;
#: shorter runs scale them down in proportion (a 2-minute run compares 20 s windows).
WINDOW = 300.0
WINDOW_SHARE = WINDOW / 1800.0
#: Loopback source addresses the clients may spread over: 127.0.0.2 .. 127.0.0.251.
MAX_ADDRESSES = 250


@dataclass(frozen=True)
class SoakSettings:
    """Every field is a flag (`--posts`) and an environment variable (`SOAK_POSTS`)."""

    minutes: float  # length of the load phase
    interval: float  # seconds between samples
    users: int  # users signed up for the run
    sockets: int  # WebSocket clients on /v1/stream (spread over the users)
    chats: int  # ordinary chats, 2-3 members each
    hot_chats: int  # chats with many members that get `hot_share` of the posts
    hot_members: int  # members of each hot chat
    hot_share: float  # share of posts (and reads) that go to hot chats
    sign_ins: float  # sign-ins per second
    posts: float  # POST /v1/chats/{cid}/messages per second
    history: float  # history reads per second (one page each, of the newest `pages`)
    chat_lists: float  # GET /v1/chats per second (each follows up to `pages` pages)
    read_marks: float  # PUT /v1/chats/{cid}/read per second
    produce: float  # records per second from the external producer (straight to Kafka)
    pages: int  # newest pages a history read picks from; pages a chat-list read follows
    in_flight: int  # requests of one operation in flight at most; more are shed, counted
    addresses: int  # loopback source addresses the clients are spread over
    workers: int | None  # workers when the soak starts the platform (make dev's default)
    use_running: bool  # use the running `make dev` platform; fail if there is none
    keep: bool  # leave a platform the soak started running afterwards
    out: Path  # folder of the CSV, PNG, summary and logs
    seed: int  # of the random choices (which chat, which user)

    @property
    def duration(self) -> float:
        return self.minutes * 60.0

    @property
    def window(self) -> float:
        """Length of the warm-up and of the first/last windows compared in the summary."""
        return min(WINDOW, self.duration * WINDOW_SHARE)

    def rates(self) -> dict[str, float]:
        """Operations of the REST load process per second, by operation name."""
        return {
            "sign_in": self.sign_ins,
            "post": self.posts,
            "history": self.history,
            "chat_list": self.chat_lists,
            "read_mark": self.read_marks,
            "produce": self.produce,
        }

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "out": str(self.out)}


#: flag -> (type, default, help). Defaults: a steady load a 2-core machine carries
#: beside the whole platform; a few hundred sockets, as the issue asks.
FLAGS: dict[str, tuple[type, Any, str]] = {
    "minutes": (float, 30.0, "length of the load phase in minutes"),
    "interval": (float, 10.0, "seconds between samples"),
    "users": (int, 200, "users signed up for the run"),
    "sockets": (int, 300, "WebSocket clients on /v1/stream"),
    "chats": (int, 300, "ordinary chats (2-3 members)"),
    "hot_chats": (int, 4, "hot chats (many members, a large share of the posts)"),
    "hot_members": (int, 25, "members of each hot chat"),
    "hot_share": (float, 0.5, "share of posts and reads going to hot chats"),
    "sign_ins": (float, 0.5, "sign-ins per second"),
    "posts": (float, 20.0, "messages posted per second"),
    "history": (float, 10.0, "history reads per second"),
    "chat_lists": (float, 5.0, "chat-list reads per second"),
    "read_marks": (float, 5.0, "read-marker moves per second"),
    "produce": (float, 2.0, "records per second written straight to the topic"),
    "pages": (int, 3, "newest pages a history read picks one of; pages a chat-list read follows"),
    "in_flight": (int, 64, "requests of one operation in flight at most (more are shed)"),
    "addresses": (int, 64, f"loopback source addresses of the clients (<= {MAX_ADDRESSES})"),
    "seed": (int, 17, "seed of the random choices"),
}


#: What SOAK_USE_RUNNING and SOAK_KEEP may say (any case).
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})


def _refuse(message: str) -> NoReturn:
    """A setting that cannot work: exit 2, as argparse does for a flag (1 says an
    invariant was violated)."""
    print(f"python -m bench.soak: {message}", file=sys.stderr)
    raise SystemExit(2)


def _env_flag(env: Mapping[str, str], name: str) -> bool:
    """A yes/no environment variable: 1/true/yes/on or 0/false/no/off (unset: no)."""
    raw = env.get(name, "")
    said = raw.strip().lower()
    if said in TRUE:
        return True
    if said in FALSE:
        return False
    _refuse(f"{name} must be one of 1/true/yes/on or 0/false/no/off, got {raw!r}")


def _env_default(env: Mapping[str, str], name: str, kind: type, default: Any) -> Any:
    raw = env.get(f"SOAK_{name.upper()}")
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        _refuse(f"SOAK_{name.upper()} must be a {kind.__name__}, got {raw!r}")


def parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Soak: the platform under steady mixed load; CSV, PNG and summary.",
        epilog="Every flag also reads SOAK_<FLAG> from the environment (SOAK_MINUTES=5).",
    )
    for name, (kind, default, text) in FLAGS.items():
        value = _env_default(env, name, kind, default)
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=value, help=text)
    p.add_argument(
        "--workers",
        type=int,
        default=_env_default(env, "workers", int, None),
        help=f"workers when the soak starts the platform, 1 .. {MAX_WORKERS} "
        "(default: make dev's, 2)",
    )
    p.add_argument(
        "--use-running",
        action="store_true",
        default=_env_flag(env, "SOAK_USE_RUNNING"),
        help="use the running `make dev` platform; fail if there is none",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        default=_env_flag(env, "SOAK_KEEP"),
        help="leave a platform the soak started running afterwards",
    )
    p.add_argument("--out", type=Path, default=env.get("SOAK_OUT") or None, help="report folder")
    return p


def from_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> SoakSettings:
    """Parse and check the settings; exits with a usage message when they make no sense."""
    e = os.environ if env is None else env
    p = parser(e)
    args = p.parse_args(argv)
    problems = _problems(args)
    if args.workers is not None and (
        problem := DevSettings.from_env(dict(e)).worker_count_problem(args.workers)
    ):
        problems.append(f"--workers: {problem}")  # what make dev would refuse
    if problems:
        p.error("; ".join(problems))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or REPO / "reports" / f"soak-{stamp}"
    values = {name: getattr(args, name) for name in FLAGS}
    return SoakSettings(
        **values,
        workers=args.workers,
        use_running=args.use_running,
        keep=args.keep,
        out=Path(out).resolve(),
    )


def _problems(args: argparse.Namespace) -> list[str]:
    problems = []
    floats = [name for name, (kind, _, _) in FLAGS.items() if kind is float]
    infinite = [f"--{n.replace('_', '-')}" for n in floats if not math.isfinite(getattr(args, n))]
    if infinite:
        return [f"must be finite (not nan or inf): {', '.join(infinite)}"]
    if args.minutes <= 0 or args.interval <= 0:
        problems.append("--minutes and --interval must be > 0")
    if args.users < 2:
        problems.append("--users must be >= 2")
    if args.sockets < 0 or args.chats < 0 or args.hot_chats < 0:
        problems.append("--sockets, --chats and --hot-chats must be >= 0")
    if args.chats + args.hot_chats < 1:
        problems.append("needs at least one chat")
    if args.hot_chats and args.hot_members < 2:
        problems.append("--hot-members must be >= 2")
    everyone_hot = args.hot_chats > 0 and args.hot_members >= args.users
    if args.users > 2 * args.chats and not everyone_hot:
        problems.append(
            f"--users ({args.users}) must be <= 2 x --chats ({args.chats}): the ordinary chats"
            " pair the users up so that each is in a chat (or --hot-members >= --users puts"
            " every user in each hot chat)"
        )
    if not 0 <= args.hot_share <= 1:
        problems.append("--hot-share must be within 0..1")
    rates = ("sign_ins", "posts", "history", "chat_lists", "read_marks", "produce")
    if any(getattr(args, r) < 0 for r in rates):
        problems.append("rates must be >= 0")
    if args.posts <= 0 and args.produce <= 0:
        problems.append("--posts or --produce must be > 0: the checks need messages to check")
    if args.pages < 1 or args.in_flight < 1:
        problems.append("--pages and --in-flight must be >= 1")
    if not 1 <= args.addresses <= MAX_ADDRESSES:
        problems.append(f"--addresses must be within 1..{MAX_ADDRESSES}")
    return problems
