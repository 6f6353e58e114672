"""A stand-in worker: an aiohttp server registered in Consul, for tests, benchmarks and demos.

    python -m discovery.stub --consul http://127.0.0.1:8500 --service dialogue-demo

It serves GET /ping, GET /status/{code} (answers with that status) and echoes
any other request as JSON with its own instance id. Once registered it prints
one JSON line {"event": "registered", "id", "port", "at"} on stdout ("at" is
time.monotonic(), comparable between processes on one machine). SIGTERM or
SIGINT deregisters and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time

from aiohttp import web

from discovery.models import HealthReport, Registration, instance_id_for
from discovery.registry import Registrar


class Identity:
    """The instance id, known only once the port is bound."""

    value = ""


def make_app(identity: Identity) -> web.Application:
    async def ping(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "instance": identity.value})

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.json_response({"instance": identity.value, "status": code}, status=code)

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "instance": identity.value,
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "authorization": request.headers.get("Authorization"),
                "body": body.decode(errors="replace"),
            }
        )

    app = web.Application()
    app.router.add_get("/ping", ping)
    app.router.add_route("*", r"/status/{code:\d{3}}", status)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def serve(args: argparse.Namespace) -> None:
    identity = Identity()
    runner = web.AppRunner(make_app(identity), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    port = runner.addresses[0][1]
    instance_id = identity.value = args.id or instance_id_for(args.host, port, {})

    async def healthy() -> HealthReport:
        return HealthReport.passing()

    registration = Registration(instance_id, args.host, port, "stub", service=args.service)
    registrar = Registrar(args.consul, registration, healthy, ttl=args.ttl)
    await registrar.start()
    event = {"event": "registered", "id": instance_id, "port": port, "at": time.monotonic()}
    print(json.dumps(event), flush=True)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await registrar.stop()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m discovery.stub", description=__doc__)
    parser.add_argument("--consul", default="http://127.0.0.1:8500")
    parser.add_argument("--service", default="dialogue")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--id", default="", help="instance id (default: derived from host:port)")
    parser.add_argument("--ttl", type=float, default=10.0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
