"""A stand-in worker: an aiohttp server registered in Consul, for tests, benchmarks and demos.

    python -m infra.processes.stub --consul http://127.0.0.1:8500 --service dialogue-demo

It serves GET /ping, GET /status/{code} (answers with that status) and echoes
any other request as JSON with its own instance id. Once registered it prints
one JSON line {"event": "registered", "id", "port", "registering_at", "at"} on
stdout (time.monotonic() before and after Registrar.start(), comparable between
processes on one machine). SIGTERM or
SIGINT deregisters and exits. `StubServer` is the same server in-process (no
registration); `StubProcess` runs the command above as a child process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import Counter
from typing import Any

from aiohttp import web

from discovery.models import HealthReport, Registration, instance_id_for
from discovery.registry import Registrar
from platform_common.http import TIMEOUT_HEADER


class StubState:
    """What a stub answers and what it saw; tests set `fail_status` or `delay` to make it sick."""

    def __init__(self) -> None:
        self.id = ""
        self.fail_status: int | None = None
        self.delay = 0.0  # seconds every answer except /ping waits
        #: Set: every answer except /ping is this many bytes, streamed without a length.
        self.answer_bytes: int | None = None
        #: Paths answered as a worker answers a route it does not have (404, 4040).
        self.missing: set[str] = set()
        #: Paths answered as a worker answers a request its handler failed on (500, 5000).
        self.faulty: set[str] = set()
        #: Set: every answer except /ping is a 200 whose body is not JSON.
        self.garbled = False
        self.hits: Counter[str] = Counter()


async def _stream(request: web.Request, size: int) -> web.StreamResponse:
    """`size` bytes of JSON-ish filler, chunked (no Content-Length), stopping early when
    the client goes away."""
    answer = web.StreamResponse(headers={"Content-Type": "application/json"})
    await answer.prepare(request)
    chunk = b" " * (256 * 1024)
    with contextlib.suppress(ConnectionError):
        while size > 0:
            await answer.write(chunk[:size])
            size -= len(chunk)
        await answer.write_eof()
    return answer


def make_app(state: StubState) -> web.Application:
    async def ping(request: web.Request) -> web.Response:
        state.hits["/ping"] += 1
        if state.fail_status is not None:
            return web.json_response({"instance": state.id}, status=state.fail_status)
        return web.json_response({"ok": True, "instance": state.id})

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.json_response({"instance": state.id, "status": code}, status=code)

    async def echo(request: web.Request) -> web.StreamResponse:
        state.hits[request.path] += 1
        body = await request.read()
        if state.delay:
            await asyncio.sleep(state.delay)
        if state.fail_status is not None:
            return web.json_response({"instance": state.id}, status=state.fail_status)
        if state.answer_bytes is not None:
            return await _stream(request, state.answer_bytes)
        if state.garbled:
            return web.Response(text="<html>not an answer</html>", content_type="text/html")
        if request.path in state.faulty:
            fault = {"object": "error", "code": "5000", "message": "internal error"}
            return web.json_response(fault, status=500)
        if request.path in state.missing:
            no_route = {"object": "error", "code": "4040", "message": "Not Found"}
            return web.json_response(no_route, status=404)
        return web.json_response(
            {
                "instance": state.id,
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "authorization": request.headers.get("Authorization"),
                "timeout": request.headers.get(TIMEOUT_HEADER),
                "body": body.decode(errors="replace"),
            }
        )

    app = web.Application()
    app.router.add_get("/ping", ping)
    app.router.add_route("*", r"/status/{code:\d{3}}", status)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


class StubServer:
    """The stub's HTTP server in this process, on 127.0.0.1 (port 0: any free port)."""

    def __init__(self, instance_id: str = "", host: str = "127.0.0.1") -> None:
        self.host = host
        self.state = StubState()
        self.state.id = instance_id
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self, port: int = 0) -> int:
        # A short shutdown: a test's deliberately hung requests must not hold up stop().
        self._runner = web.AppRunner(make_app(self.state), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, port).start()
        self.port = int(self._runner.addresses[0][1])
        self.state.id = self.state.id or instance_id_for(self.host, self.port, {})
        return self.port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


class StubProcess:
    """`python -m infra.processes.stub` as a child process, to be stopped or SIGKILLed."""

    def __init__(
        self,
        consul_url: str,
        service: str,
        *,
        ttl: float = 10.0,
        deregister_critical_after: str = "1m",
    ) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "infra.processes.stub",
            "--consul",
            consul_url,
            "--service",
            service,
            "--ttl",
            str(ttl),
            "--deregister-critical-after",
            deregister_critical_after,
        ]
        self.proc: asyncio.subprocess.Process | None = None
        self.registered: dict[str, Any] = {}

    @property
    def id(self) -> str:
        return str(self.registered["id"])

    async def start(self) -> dict[str, Any]:
        """Start it and return its "registered" event once it is registered and passing."""
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL
        )
        if self.proc.stdout is None:
            raise RuntimeError("stub started without a stdout pipe")
        async with asyncio.timeout(20):
            line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"stub exited with {await self.proc.wait()} before registering")
        self.registered = json.loads(line)
        return self.registered

    async def kill(self) -> float:
        """SIGKILL it, as a crash would; returns the monotonic time of the kill."""
        if self.proc is None:
            raise RuntimeError("stub was not started")
        at = time.monotonic()
        self.proc.kill()
        await self.proc.wait()
        return at

    async def stop(self) -> None:
        """SIGTERM (graceful: it deregisters) and wait; SIGKILL if it does not exit."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            async with asyncio.timeout(10):
                await self.proc.wait()
        except TimeoutError:
            await self.kill()


async def serve(args: argparse.Namespace) -> None:
    server = StubServer(args.id, args.host)
    port = await server.start(args.port)

    async def healthy() -> HealthReport:
        if server.state.fail_status is not None:
            return HealthReport.critical(f"answering {server.state.fail_status}")
        return HealthReport.passing()

    registration = Registration(server.state.id, args.host, port, "stub", service=args.service)
    registrar = Registrar(
        args.consul,
        registration,
        healthy,
        ttl=args.ttl,
        deregister_critical_after=args.deregister_critical_after,
    )
    registering_at = time.monotonic()
    await registrar.start()
    event = {
        "event": "registered",
        "id": server.state.id,
        "port": port,
        "registering_at": registering_at,  # Registrar.start() called
        "at": time.monotonic(),  # start() returned: registered and passing
    }
    print(json.dumps(event), flush=True)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await registrar.stop()
    await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.processes.stub", description=__doc__)
    parser.add_argument("--consul", default="http://127.0.0.1:8500")
    parser.add_argument("--service", default="dialogue")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--id", default="", help="instance id (default: derived from host:port)")
    parser.add_argument("--ttl", type=float, default=10.0)
    parser.add_argument("--deregister-critical-after", default="1m")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
