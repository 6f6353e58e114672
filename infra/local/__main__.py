"""`python -m infra.local up|down|status [service ...] | purge`."""

from __future__ import annotations

import argparse
import sys
import time

from infra.local.process import ProcessError
from infra.local.service import ServiceError
from infra.local.stack import Stack

#: Exit status of a command stopped by Ctrl-C (128 + SIGINT), as a shell reports it.
INTERRUPTED = 130
COMMANDS = {
    "up": "start what is not running, and what it requires, and wait until it answers",
    "down": "stop what up started, by pid",
    "status": "what runs, where, and whether it answers (exit 3 when one does not)",
    "purge": "stop everything, then remove the run folder and, as root, PostgreSQL's "
    "folder in /var/tmp when it is this run folder's (make clean)",
}


def _parser(stack: Stack) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local",
        description=__doc__,
        epilog="; ".join(f"{command}: {said}" for command, said in COMMANDS.items()),
    )
    parser.add_argument("command", choices=list(COMMANDS))
    others = [n for n in stack.names("status") if n not in stack.names("up")]
    parser.add_argument(
        "services",
        nargs="*",
        help=f"{', '.join(stack.names('up'))} (default: all); up also starts what a service "
        "requires (ferretdb: postgres); down and status also take the nodes of the other "
        f"Kafka layout ({', '.join(others)}); purge takes none",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    stack = Stack()
    parser = _parser(stack)
    args = parser.parse_args(argv)
    known = stack.names(args.command)
    if args.command == "purge" and args.services:
        parser.error("purge takes no service names: it stops and removes everything")
    if unknown := sorted(set(args.services) - set(known)):
        parser.error(f"unknown service(s): {', '.join(unknown)}; known: {', '.join(known)}")
    names = args.services or None
    t0 = time.monotonic()
    try:
        if args.command == "up":
            stack.up(names)
            print(f"infra up in {time.monotonic() - t0:.1f}s; run folder {stack.settings.run_dir}")
        elif args.command == "down":
            stopped = stack.down(names)
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        elif args.command == "purge":
            stopped, removed = stack.purge()
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
            print(f"removed: {', '.join(map(str, removed)) or 'nothing was there'}")
        else:
            rows = stack.status(names)
            for row in rows:
                state = "ready" if row.ready else ("starting/unhealthy" if row.pid else "stopped")
                print(f"{row.name:<9} {state:<18} pid={row.pid or '-':<8} {row.endpoint}")
            return 0 if all(r.ready for r in rows) else 3
    except (ServiceError, ProcessError, OSError) as exc:
        print(f"infra {args.command} failed: {exc}", file=sys.stderr)
        for note in getattr(exc, "__notes__", []):
            print(note, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # up has stopped what it had started; anything it could not stop is still named
        # by its pid file, which `down` acts on.
        print(f"\ninfra {args.command} interrupted", file=sys.stderr)
        return INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
