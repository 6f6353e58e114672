"""The worker's life: start in order, serve until SIGTERM, stop in the reverse order."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable

from pymongo.errors import ConfigurationError

from dialogue_worker.adapters.topics import ensure_topics, partitioner
from dialogue_worker.bootstrap import Components
from dialogue_worker.errors import DuplicateWorker, WorkerError

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_DUPLICATE = 3

#: Cyclic GC thresholds once started (CPython's default is 700, 10, 10). Every record
#: makes a few dozen short-lived objects; at 700 the collector ran ~500 times per 30,000
#: records and took about a tenth of the worker's CPU.
GC_THRESHOLDS = (10_000, 10, 10)


def settle_gc() -> None:
    """After start-up: keep the start-up heap (modules, faust's services, clients), which
    lives as long as the process, out of every later collection, and collect less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class WorkerRuntime:
    def __init__(self, parts: Components) -> None:
        self._parts = parts
        self._stop = asyncio.Event()
        self._exit = EXIT_OK

    def request_stop(self) -> None:
        """What SIGTERM/SIGINT do: begin the graceful shutdown."""
        self._stop.set()

    async def run(self) -> int:
        """Start, serve until asked to stop (or the app fails), then shut down; the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            if await self._prepared():
                await self._guarded(self._start())
                settle_gc()
                log.info("worker %s ready", self._parts.instance_id)
                await self._serve()
        except DuplicateWorker as exc:
            log.error("refusing to start: %s", exc)
            self._exit = EXIT_DUPLICATE
        except WorkerError as exc:
            log.error("cannot start: %s", exc)
            self._exit = EXIT_FAILED
        finally:
            await self._shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        return self._exit

    async def _prepared(self) -> bool:
        """Prepare what the consumer needs (`_prepare`); False when asked to stop first.

        A SIGTERM while a dependency is awaited (MongoDB not answering yet, for up to
        MONGO_TIMEOUT) ends the wait instead of outlasting it, so `docker compose stop`
        never has to SIGKILL a worker that is still starting. The shutdown then closes
        whatever was opened. faust's app is not started here: it is never cancelled
        half-way (its start spawns the consumer's thread)."""
        preparing = asyncio.ensure_future(self._guarded(self._prepare()))
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({preparing, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if preparing.done() and not self._stop.is_set():
            preparing.result()  # a start failure is raised
            return True
        preparing.cancel()
        await asyncio.wait({preparing})
        if not preparing.cancelled():
            preparing.exception()  # (a failure meanwhile is not said: the worker is stopping)
        log.info("asked to stop while starting: stopping before taking any partition")
        return False

    @staticmethod
    async def _guarded(starting: Awaitable[None]) -> None:
        """Await a start step; what the OS or the MongoDB client refuses is a WorkerError."""
        try:
            await starting
        except (OSError, ConfigurationError) as exc:  # what the OS or the MongoDB client
            raise WorkerError(str(exc)) from exc  # refuses: said as any other start failure

    async def _prepare(self) -> None:
        p, s = self._parts, self._parts.settings
        try:
            s.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkerError(f"DATA_DIR {s.data_dir} cannot be faust's folder: {exc}") from exc
        await p.database.open()
        await p.registration.check()  # Consul and our id, before taking any partition
        topics = await ensure_topics(
            s.kafka_bootstrap,
            [s.topic, s.dlq_topic, s.events_topic],
            s.topic_partitions,
            s.topic_replication,
            s.topic_min_insync,
        )
        route = partitioner(topics.partitions[s.topic])
        p.persister.route(route)
        p.outbox.route(route)
        await p.outbox.start()
        await p.positions.start()
        # Kept chat lists are used once the feed reads the events topic (from its end);
        # without them (CHAT_LISTS_MAX=0) the worker reads no event.
        if s.chat_lists_max:
            await p.feed.start(p.lists.on_event, lambda reason: None)

    async def _start(self) -> None:
        """Start the consumer and register, once `_prepare` is done."""
        p = self._parts
        # Web server first, then the consumer joins the group and the agent starts.
        await p.app.start()
        if p.app.crashed:
            raise WorkerError(f"faust app failed to start: {p.app.crash_reason!r}")
        await p.registration.start()

    async def _serve(self) -> None:
        app_ended = asyncio.ensure_future(self._parts.app.wait_until_stopped())
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({app_ended, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (app_ended, stop):
                waiter.cancel()
        if self._parts.app.crashed:
            log.error("faust app crashed: %r", self._parts.app.crash_reason)
            self._exit = EXIT_FAILED

    async def _shutdown(self) -> None:
        p, s = self._parts, self._parts.settings
        log.info("shutting down: deregister, finish the batch in hand, commit, leave the group")
        try:
            await p.registration.stop()
        except Exception:  # Consul gone: the TTL check expires and deregisters us anyway
            log.exception("deregistration failed")
        await asyncio.sleep(s.deregister_grace)  # readers notice before the server goes
        if not await p.persister.drain(s.shutdown_grace):
            log.warning("batch in hand unfinished after %.0fs: redelivered later", s.shutdown_grace)
        if p.app.started:
            try:  # what is durable now; the rest is redelivered later
                async with asyncio.timeout(s.shutdown_grace):
                    await p.committer.commit()
            except TimeoutError:
                log.warning("final offset commit timed out: those records are read again")
        if p.app.started or p.app.crashed:
            await p.app.stop()  # leaves the group, stops the web server
        await p.feed.stop()
        await p.positions.stop()
        await p.outbox.stop()
        await p.database.close()
        log.info("worker %s stopped", p.instance_id)
