"""Provision several services side by side; stop every step at the first failure or Ctrl-C."""

from __future__ import annotations

import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

from infra.local.downloads import Cancelled, Fetches
from infra.local.service import Progress, Service, ServiceError


class _Heard(Progress):
    """Passes steps on, remembering whether there were any."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.anything = False

    def step(self, service: str, message: str) -> None:
        self.anything = True
        self.progress.step(service, message)


def provision_all(services: list[Service], progress: Progress) -> None:
    """Provision `services` in parallel (builds and downloads are independent).

    The first failure stops the other steps (their downloads and builds are killed: what
    they finished stays in the cache), and the ServiceError names every step that
    failed. Ctrl-C stops them all the same way before it goes on up.
    """
    if not services:
        return
    fetches = Fetches()
    pool = ThreadPoolExecutor(max_workers=len(services), thread_name_prefix="provision")
    futures = {pool.submit(_provision, s, progress, fetches): s for s in services}
    try:
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        if pending:  # a step failed: the others would only keep the failure waiting
            fetches.cancel()
    except BaseException:
        fetches.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True, cancel_futures=True)
    _raise_failures(futures)


def _raise_failures(futures: dict[Future[None], Service]) -> None:
    failed: list[tuple[str, BaseException]] = []
    stopped: list[str] = []
    for future, service in futures.items():
        error = None if future.cancelled() else future.exception()
        if future.cancelled() or isinstance(error, Cancelled):
            stopped.append(service.name)
        elif error is not None:
            failed.append((service.name, error))
    if not failed:
        return
    lines = [
        f"{name}: {error}" if isinstance(error, ServiceError) else f"{name}: {error!r}"
        for name, error in failed
    ]
    if stopped:
        lines.append(f"(stopped before they were done: {', '.join(stopped)})")
    raise ServiceError("provisioning failed:\n" + "\n".join(lines)) from failed[0][1]


def _provision(service: Service, progress: Progress, fetches: Fetches) -> None:
    """Provision one service; when it had work to do, say when it is done."""
    heard = _Heard(progress)
    t0 = time.monotonic()
    with fetches.in_this_thread():
        fetches.check(service.name)
        service.provision(heard)
    if heard.anything:
        progress.step(service.name, f"provisioned in {time.monotonic() - t0:.0f}s")
