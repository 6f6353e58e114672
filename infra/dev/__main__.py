"""`python -m infra.dev up [--workers N] | down | scale N | status | demo`."""

from __future__ import annotations

import argparse
import sys
import time

from infra.dev.demo import (
    ALICE,
    BOB,
    TRY_IT,
    DemoError,
    curl_example,
    demo_pair,
    post_messages,
    wait_persisted,
)
from infra.dev.platform import DevError, DevPlatform, DevStatus
from infra.dev.settings import DevSettings
from infra.local.process import ProcessError
from infra.local.service import ServiceError
from platform_common.local import LOCAL_ADMIN_TOKEN

#: Exit status of a command stopped by Ctrl-C (128 + SIGINT), as a shell reports it.
INTERRUPTED = 130


def summary(settings: DevSettings, status: DevStatus, elapsed: float) -> str:
    """What is where, and the three-line curl example (which the e2e test runs)."""
    api, consul = settings.api_url, settings.consul_url
    lines = [
        f"dialogue platform is up ({elapsed:.1f}s): gateway + {len(status.workers)} worker(s) "
        f"on {settings.host}",
        f"  API         {api}   (OpenAPI {api}/v1/openapi.json, {api}/ready)",
        f"  Consul UI   {consul}/ui/dc1/services/dialogue/instances",
    ]
    for w in status.workers:
        state = "passing" if w.passing else "NOT passing"
        lines.append(f"  worker      {w.service_id:<14} {w.url}  pid {w.pid}  {state}")
    lines += [
        f"  instances   curl -s -H 'Authorization: Bearer {LOCAL_ADMIN_TOKEN}' "
        f"{api}/v1/admin/instances   (and {api}/metrics, same token)",
        f"  logs        {settings.run_dir}/gateway.log, {settings.run_dir}/worker-<n>.log; "
        f"infrastructure {settings.local.run_dir}/<service>.log"
        + (
            f" (PostgreSQL: {settings.local.postgres_run_dir}/postgres.log)"
            if settings.local.postgres_run_dir != settings.local.run_dir
            else ""
        ),
        "  commands    make scale WORKERS=3 | make demo | make dev-down",
        "",
    ]
    if status.demo_chat:
        lines += [TRY_IT, *curl_example(api, status.demo_chat), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.dev", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start infrastructure, gateway and workers; wait; print")
    up.add_argument("--workers", type=int, default=None, help="number of workers (default 2)")
    sub.add_parser("down", help="stop what up started")
    scale = sub.add_parser("scale", help="add or remove workers while running")
    scale.add_argument("workers", type=int)
    sub.add_parser("status", help="what runs, and whether it is ready/passing")
    sub.add_parser("demo", help="two users, a chat and a few messages, through the API")
    args = parser.parse_args(argv)

    settings = DevSettings.from_env()
    platform = DevPlatform(settings)
    t0 = time.monotonic()
    workers = getattr(args, "workers", None)
    minimum = 0 if args.command == "scale" else 1  # scale 0 stops every worker
    if workers is not None and (problem := settings.worker_count_problem(workers, minimum)):
        parser.error(problem)
    try:
        if args.command == "up":
            print(summary(settings, platform.up(args.workers), time.monotonic() - t0))
        elif args.command == "scale":
            status = platform.scale(args.workers)
            print(
                f"{len(status.workers)} worker(s): "
                + ", ".join(f"{w.service_id} ({w.url})" for w in status.workers)
            )
        elif args.command == "down":
            stopped = platform.down()
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        elif args.command == "demo":
            alice, bob, chat = demo_pair(settings.api_url)
            sent = post_messages(settings.api_url, chat, alice, bob)
            print(
                f"users: {ALICE[0]} (id {alice.user_id}, password {ALICE[1]}), "
                f"{BOB[0]} (id {bob.user_id}, password {BOB[1]})"
            )
            persisted = wait_persisted(
                settings.api_url, chat, bob, {m["id"] for m in sent}, within=30
            )
            where = "read back through a worker" if persisted else "NOT readable after 30 s"
            print(f"chat:  {chat}; {len(sent)} messages posted (202) and {where}")
            if not persisted:
                return 1
        else:
            status = platform.status()
            ready = "ready" if status.gateway_ready else "not ready"
            print(f"gateway  pid {status.gateway_pid or '-'}  {settings.api_url}  {ready}")
            for w in status.workers:
                print(
                    f"{w.service_id}  pid {w.pid or '-'}  {w.url}  "
                    f"{'passing' if w.passing else 'not passing'}"
                )
            return 0 if status.gateway_ready and all(w.passing for w in status.workers) else 3
    except (DevError, DemoError, ProcessError, ServiceError) as exc:
        print(f"infra.dev {args.command} failed: {exc}", file=sys.stderr)
        if args.command == "up":
            print("`make dev-down` stops whatever was started.", file=sys.stderr)
        elif args.command == "down":
            print(
                "What it could not stop keeps its pid file: `make dev-down` tries again.",
                file=sys.stderr,
            )
        return 1
    except KeyboardInterrupt:
        print(f"\ninfra.dev {args.command} interrupted.", file=sys.stderr)
        if args.command in ("up", "scale", "down"):
            print("`make dev-down` stops what was started.", file=sys.stderr)
        return INTERRUPTED
    except OSError as exc:
        # Only these talk to the running processes; up and down say the OS's reason alone.
        hint = " (is `make dev` running?)" if args.command in ("scale", "status", "demo") else ""
        print(f"infra.dev {args.command} failed: {exc}{hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
