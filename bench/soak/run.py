"""The soak from start to end: platform, users and chats, load processes, a sample every
interval, the invariants, and the CSV, PNG and summary in the report folder."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import time
import traceback
from pathlib import Path

from bench.soak.channel import LoadFailed, LoadProcess
from bench.soak.ctrl_c import CtrlC, Interrupted
from bench.soak.invariants import check_live, check_messages
from bench.soak.platform import SoakError, Target, target
from bench.soak.plot import plot
from bench.soak.prepare import PrepareFailed, prepare
from bench.soak.report import message_verdict, summary, write_csv
from bench.soak.sampler import Sample, Sampler
from bench.soak.settings import SoakSettings
from infra.dev.platform import DevError

#: Exit codes: the invariants held / were violated / the soak could not run.
OK, VIOLATED, FAILED = 0, 1, 2
#: Seconds the live load may take to open its streams (a few at a time).
STREAMS_WITHIN = 600.0


def _say(text: str) -> None:
    print(f"[soak] {text}", file=sys.stderr, flush=True)


def _progress(sample: Sample) -> str:
    app = ", ".join(
        f"{name} {mib:.0f} MiB"
        for name, mib in sample.rss.items()
        if mib is not None and name.startswith(("gateway", "worker-"))
    )
    post = sample.stats.latency.get("post")
    p99 = post.quantile(0.99) if post else None
    errors = sum(sample.stats.errors().values())
    p99_text = "-" if p99 is None else f"{p99 * 1000:.0f} ms"
    return (
        f"{sample.t / 60:5.1f} min: {app}; post p99 {p99_text}; errors {errors};"
        f" max lag {sample.max_lag}; streams {sample.stream_sockets or 0:.0f}"
    )


async def _hold(
    settings: SoakSettings, sampler: Sampler, early: asyncio.Event, csv: Path
) -> list[Sample]:
    """Sample every interval until the duration is over (or Ctrl-C asked to end early)."""
    samples: list[Sample] = []
    count = math.ceil(settings.duration / settings.interval)
    for k in range(1, count + 1):
        due = sampler.started + min(k * settings.interval, settings.duration)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(early.wait(), max(0.0, due - time.monotonic()))
        samples.append(await sampler.sample())
        write_csv(samples, csv)  # rewritten each time: a run that dies still leaves its CSV
        _say(_progress(samples[-1]))
        if early.is_set():  # Ctrl-C (CtrlC said so when it came)
            break
    return samples


async def _soak(settings: SoakSettings, where: Target, ctrl_c: CtrlC) -> int:
    out = settings.out
    ctrl_c.check()  # pressed while the platform started (a thread: it could not be stopped)
    dev = where.dev
    plan = await ctrl_c.setting_up(
        prepare(settings, where.api_url, dev.local.kafka_bootstrap, dev.topic)
    )
    plan_path = out / "plan.json"
    plan.save(plan_path)
    live = LoadProcess("load-live", "bench.soak.load_live", plan_path, out)
    rest = LoadProcess("load-rest", "bench.soak.load_rest", plan_path, out)
    try:
        opened = await ctrl_c.setting_up(live.start(STREAMS_WITHIN))
        _say(f"{opened['ready']}/{opened['sockets']} streams ready; starting the REST load")
        await ctrl_c.setting_up(rest.start(60.0))
        ctrl_c.phase = "load"  # a Ctrl-C from here on ends the load early
        _say(f"load running for {settings.minutes:g} min; a sample every {settings.interval:g} s")
        async with Sampler(where, [rest, live], time.monotonic()) as sampler:
            samples = await _hold(settings, sampler, ctrl_c.pressed, out / "soak.csv")
            ctrl_c.phase = "checks"
            rest_final = await rest.stop(120.0)
            _say("load stopped; waiting for the workers, then reading MongoDB")
            local = where.dev.local
            messages, stored = await check_messages(
                sampler.kafka, local.mongo_url, where.dev.mongo_db, plan, rest_final
            )
            # Written now: if the live clients or the plot fail after this, the run ends
            # FAILED without a summary, and a broken message invariant would be lost.
            (out / "messages.txt").write_text(message_verdict(messages) + "\n")
            _say("waiting for the live clients to see every stored message")
            live_final = await live.stop(300.0, expect=stored.last_seq)
    finally:
        await asyncio.gather(rest.close(), live.close())
    live_check = check_live(live_final)
    lines = summary(
        settings, samples, len(where.workers()), int(opened["ready"]), messages, live_check
    )
    title = f"soak {time.strftime('%Y-%m-%d %H:%M')}: {samples[-1].t / 60:.1f} min"
    try:
        plot(samples, settings.window, out / "soak.png", title)
    except Exception as exc:  # the figure is not the verdict: the summary still goes out
        lines.append(f"plot not drawn: {type(exc).__name__}: {exc}")
    lines += [f"files: {out / 'soak.csv'}, {out / 'soak.png'}, {out / 'summary.txt'}"]
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return OK if messages.ok and live_check.ok else VIOLATED


def unexpected(exc: Exception, out: Path) -> int:
    """Report an error the soak has no name for as FAILED (2), never as VIOLATED (1): one
    line on stderr, the traceback in the report folder (when it can be written)."""
    logs = f"report and load logs in {out}"
    error = out / "error.txt"
    try:
        error.write_text("".join(traceback.format_exception(exc)))
    except OSError:  # the folder itself may be what failed: the line alone says what
        where = logs
    else:
        where = f"traceback in {error}; {logs}"
    print(f"soak failed: {type(exc).__name__}: {exc} ({where})", file=sys.stderr, flush=True)
    return FAILED


async def soak(settings: SoakSettings) -> int:
    """Run one soak; the exit code (OK, VIOLATED or FAILED)."""
    try:
        settings.out.mkdir(parents=True, exist_ok=True)
        settings_json = json.dumps(settings.to_json(), indent=1) + "\n"
        (settings.out / "settings.json").write_text(settings_json)
        _say(f"report folder {settings.out}")
        ctrl_c = CtrlC()
        ctrl_c.install()
        async with target(settings.use_running, settings.workers, settings.keep) as where:
            return await _soak(settings, where, ctrl_c)
    except Interrupted:
        print("soak interrupted (Ctrl-C) before the load started", file=sys.stderr, flush=True)
        return FAILED
    except (SoakError, DevError, LoadFailed, PrepareFailed) as exc:
        print(f"soak failed: {exc}", file=sys.stderr, flush=True)
        return FAILED
    except Exception as exc:  # anything else is a soak that could not run, not a verdict
        return unexpected(exc, settings.out)
