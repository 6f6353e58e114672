"""`python -m gateway`: read the settings, refuse bad ones clearly, serve until stopped."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable

from aiohttp import web
from pydantic import ValidationError

from gateway.app import create_app
from gateway.entrypoints.server import GatewayRunner
from gateway.logs import AccessLogger
from gateway.settings import GatewaySettings
from platform_common.logs import setup_logging
from platform_common.settings_errors import invalid_settings

log = logging.getLogger("gateway")

#: Seconds requests in flight get to finish after SIGTERM, at least.
SHUTDOWN_GRACE = 15.0
#: What a post may wait beyond its two bounded steps (a request with the same
#: Idempotency-Key ahead of it, the event loop under load).
_GRACE_SLACK = 5.0


def shutdown_grace(settings: GatewaySettings) -> float:
    """Long enough for a post in flight: its membership check (UPSTREAM_DEADLINE) and its
    Kafka send (KAFKA_SEND_TIMEOUT). Cut short, the client got no answer while the record
    was still flushed, and its retry on another gateway posted the message twice."""
    needed = settings.upstream_deadline + settings.kafka_send_timeout + _GRACE_SLACK
    return max(SHUTDOWN_GRACE, needed)


def _announce(settings: GatewaySettings) -> None:
    """Say at start what the configuration leaves open."""
    if settings.consul_token is None:
        level = logging.INFO if settings.local else logging.WARNING
        log.log(
            level,
            "no CONSUL_TOKEN: Consul queries are anonymous, which works only while Consul "
            "runs without ACLs (local mode does; docs/security.md)",
        )


class CannotStart(Exception):
    """A dependency or the listening address is not there at start: said in one line."""


def _stop_on_signals() -> asyncio.Event:
    """An event SIGTERM and SIGINT set, from now on.

    Caught before start-up, not once serving: as a container's PID 1 (run without an init)
    the process ignores a signal it has no handler for, so a stop while start-up waits for
    MySQL (up to MYSQL_CONNECT_WAIT) lasted until the runtime's SIGKILL."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    return stopping


async def _unless_stopped(start: Awaitable[None], stopping: asyncio.Event) -> bool:
    """Await `start`, cancelled if `stopping` is set first: whether it finished (its
    failure is raised). Either way it has ended, unwinding included, on return; a cancel
    of the caller itself is passed on."""
    started = asyncio.ensure_future(start)
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({started, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        started.cancel()  # nothing to cancel once it has finished
        with contextlib.suppress(asyncio.CancelledError):
            await started
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise asyncio.CancelledError
    return not started.cancelled()


async def _setup(runner: GatewayRunner) -> None:
    """Open the adapters (the wait a stop may cut short); CannotStart when they fail."""
    try:
        await runner.setup()  # MySQL unreachable, refusing us or not migrated: RuntimeError
    except (RuntimeError, OSError) as exc:
        raise CannotStart(str(exc)) from exc


async def _listen(runner: GatewayRunner, settings: GatewaySettings) -> None:
    """Listen; never cancelled half-way (a listener opened by a cancelled start would be
    left serving where cleanup does not see it)."""
    try:
        await web.TCPSite(runner, settings.gateway_host, settings.gateway_port).start()
    except OSError as exc:  # the port is taken, or the address is not this host's
        raise CannotStart(
            f"cannot listen on {settings.gateway_host}:{settings.gateway_port}: {exc}"
        ) from exc


async def serve(settings: GatewaySettings) -> None:
    """Serve until SIGTERM or SIGINT, then finish what is in flight and close. Either
    signal during start-up ends it there, closing what it had opened."""
    stopping = _stop_on_signals()
    runner = GatewayRunner(
        create_app(settings),
        max_connections=settings.max_connections,
        max_connections_per_address=settings.max_connections_per_address,
        trusted_proxies=settings.trusted_proxies,
        header_timeout=settings.header_timeout,
        access_log_class=AccessLogger,
        shutdown_timeout=shutdown_grace(settings),
    )
    try:
        if not await _unless_stopped(_setup(runner), stopping) or stopping.is_set():
            log.info("stopped during start-up")
            return
        await _listen(runner, settings)
        log.info("serving on %s:%d", settings.gateway_host, settings.gateway_port)
        await stopping.wait()
    finally:
        await runner.cleanup()  # also what a failed or stopped start-up had opened


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """No arguments: `--help` says where the settings come from; anything else exits 2."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway",
        description="Serve the public HTTP API (sign-up, chats, messages, the live "
        "stream) until SIGTERM or SIGINT, then let the requests in flight finish.",
        epilog="It takes no arguments: every setting is an environment variable "
        "(GATEWAY_HOST, GATEWAY_PORT, MYSQL_*, KAFKA_BOOTSTRAP, CONSUL_URL, JWT_SECRET, "
        "...), listed in docs/gateway.md. Outside DIALOGUE_ENV=local the secrets must be set.",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve; `argv` is the command line's arguments (none when called from code)."""
    parse_args(argv or [])
    try:
        settings = GatewaySettings()
    except ValidationError as exc:
        sys.exit(invalid_settings("gateway", exc))
    setup_logging(settings.log_level)
    _announce(settings)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(settings))
    except CannotStart as exc:
        log.error("cannot start: %s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
