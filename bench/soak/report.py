"""The CSV of every sample and the summary printed at the end of a soak."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.soak.invariants import LiveCheck, MessageCheck
from bench.soak.sampler import Sample, flatten
from bench.soak.settings import SoakSettings
from bench.soak.stats import IntervalStats, is_server_error

#: Processes whose memory the issue bounds (gateway, workers); the rest is context.
APP_PREFIXES = ("gateway", "worker-")


def write_csv(samples: Sequence[Sample], path: Path) -> None:
    """Every sample as a row; a column for every series any sample had (blank if absent)."""
    rows = [flatten(s) for s in samples]
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(columns), restval="")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    tmp.replace(path)


def merged(samples: Iterable[Sample]) -> IntervalStats:
    total = IntervalStats()
    for sample in samples:
        total.merge(sample.stats)
    return total


@dataclass(frozen=True)
class Windows:
    """The warm-up's end and the first/last windows of the load phase."""

    length: float
    end: float

    def first(self, samples: Sequence[Sample]) -> list[Sample]:
        return [s for s in samples if s.t <= self.length + 1e-6]

    def last(self, samples: Sequence[Sample]) -> list[Sample]:
        return [s for s in samples if s.t > self.end - self.length + 1e-6]

    def after_warm_up(self, samples: Sequence[Sample]) -> Sample:
        return next((s for s in samples if s.t >= self.length - 1e-6), samples[0])


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _growth(before: float, after: float, hours: float) -> str:
    per_hour = f"{(after - before) / hours:+.1f} MiB/h" if hours > 0 else "-"
    share = (after - before) / before * 100 if before else 0.0
    return f"{per_hour:>12} {share:+6.1f} %"


def memory_lines(samples: Sequence[Sample], windows: Windows) -> list[str]:
    """RSS after warm-up vs at the end, of the samples and of the intervals' floors."""
    warm, end = windows.after_warm_up(samples), samples[-1]
    hours = (end.t - warm.t) / 3600
    lines = [
        f"memory (RSS, MiB) sample at {warm.t / 60:.1f} min -> at {end.t / 60:.1f} min, growth"
        "        | interval floor, growth"
    ]
    context = []
    for name in end.rss:
        before, after = warm.rss.get(name), end.rss[name]
        if not name.startswith(APP_PREFIXES):
            context.append(f"{name} {_mib(before)} -> {_mib(after)}")
            continue
        if before is None or after is None:
            lines.append(
                f"  {name:<14} {_mib(before):>7} -> {_mib(after):>7}  (not running throughout)"
            )
            continue
        line = f"  {name:<14} {before:7.1f} -> {after:7.1f} {_growth(before, after, hours)}"
        low_before, low_after = warm.rss_range.get(name), end.rss_range.get(name)
        if low_before and low_after:
            low, high = low_before[0], low_after[0]
            line += f" | {low:7.1f} -> {high:7.1f} {_growth(low, high, hours)}"
        lines.append(line)
    lines.append("  context: " + ", ".join(context))
    return lines


def latency_lines(samples: Sequence[Sample], windows: Windows) -> list[str]:
    first, last, whole = (
        merged(windows.first(samples)),
        merged(windows.last(samples)),
        merged(samples),
    )
    lines = [
        f"latency p99 (ms)   first {windows.length:.0f} s   last {windows.length:.0f} s"
        "   change   (whole run: n, p50, p99, max)"
    ]
    for op in sorted(whole.latency):
        a, b, h = first.latency.get(op), last.latency.get(op), whole.latency[op]
        p_a = a.quantile(0.99) if a else None
        p_b = b.quantile(0.99) if b else None
        change = f"{(p_b - p_a) / p_a * 100:+.0f} %" if p_a and p_b else "-"
        p50, p99 = h.quantile(0.5) or 0.0, h.quantile(0.99) or 0.0
        lines.append(
            f"  {op:<16} {_ms(p_a):>9}   {_ms(p_b):>9}   {change:>6}"
            f"   ({h.count}, {p50 * 1000:.1f}, {p99 * 1000:.1f}, {h.maximum * 1000:.1f})"
        )
    return lines


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def error_lines(samples: Sequence[Sample]) -> list[str]:
    whole = merged(samples)
    errors = whole.errors()
    total = sum(errors.values())
    server = sum(n for code, n in errors.items() if is_server_error(code))
    by_op: Counter[str] = Counter()
    for (op, code), n in whole.codes.items():
        if code in errors:
            by_op[f"{code} {op}"] += n
    shown = ", ".join(f"{what} x{n}" for what, n in by_op.most_common(8)) or "none"
    shed = sum(whole.shed.values())
    lines = [f"errors: {total} in total, 5xx: {server}  ({shown})"]
    lines.append(f"shed by the load (in-flight cap reached): {shed}")
    peak = max(samples, key=lambda s: s.max_lag or 0)
    if peak.lag and peak.max_lag is not None:
        partition = max(peak.lag, key=lambda p: peak.lag[p])
        lines.append(
            f"consumer lag: max {peak.max_lag} records (partition {partition} at"
            f" {peak.t:.0f} s, {peak.clock}); at end {samples[-1].max_lag}"
        )
    else:
        lines.append("consumer lag: never read")
    return lines


def invariant_lines(messages: MessageCheck, live: LiveCheck) -> list[str]:
    m, v = messages, live
    closes = ", ".join(f"{code} x{n}" for code, n in v.closes.most_common()) or "none"
    caught_up = (
        f"the workers caught up {m.caught_up_seconds:.1f} s after the load"
        if m.caught_up
        else f"the workers did NOT catch up within {m.caught_up_within:g} s"
    )
    problems = m.problems() + v.problems()
    lines = [
        "invariants:",
        f"  messages: {m.acknowledged} acknowledged ({m.posted} posts answered 202,"
        f" {m.produced} records acked to the external producer): stored once"
        f" {m.stored_once}, missing {len(m.missing)}, duplicated {len(m.duplicated)}"
        + (f" (e.g. missing {m.missing[:3]})" if m.missing else "")
        + (f" (e.g. duplicated {m.duplicated[:3]})" if m.duplicated else ""),
        f"    also: {m.unacknowledged} stored without an acknowledgement ({m.unclear} posts"
        f" and records got no clear answer); seq holes {m.seq_holes}; {caught_up}",
        f"  live: {v.clients} clients owed {v.expected} deliveries: missing {v.missing}"
        f" ({v.clients_short} clients short), beyond the store {v.beyond}, foreign {v.foreign},"
        f" out of order {v.out_of_order}, uncovered gaps {v.uncovered}; duplicates dropped"
        f" by seq {v.duplicates}, gap frames paged {v.gaps}, server closes {closes}; all in"
        f" {v.drain_seconds:.1f} s after the store",
    ]
    lines += [f"    e.g. {example}" for example in v.examples]
    if v.unchecked and not v.clients:
        lines.append("  live: NOT CHECKED: no socket was open (--sockets 0)")
    elif v.unchecked:
        lines.append(
            f"  live: NOT CHECKED: no message went to a chat of the {v.clients} socket users"
            " (a longer run, or more --sockets, checks it)"
        )
    if problems:
        lines.append("result: INVARIANTS VIOLATED: " + "; ".join(problems))
    else:
        lines.append("result: invariants hold")
    return lines


def summary(
    settings: SoakSettings,
    samples: Sequence[Sample],
    workers: int,
    ready: int,
    messages: MessageCheck,
    live: LiveCheck,
) -> list[str]:
    windows = Windows(settings.window, samples[-1].t)
    rates = ", ".join(f"{op} {rate:g}" for op, rate in settings.rates().items())
    scaled = "" if settings.window >= 300 else " (5 min of a 30-min run, scaled down)"
    return [
        f"soak: {samples[-1].t / 60:.1f} min of load, {workers} workers, {settings.users} users,"
        f" {settings.chats} chats + {settings.hot_chats} hot, {settings.sockets} sockets"
        f" ({ready} ready at the start); rates per second: {rates}",
        f"warm-up and compared windows: {windows.length:.0f} s{scaled}; {len(samples)}"
        f" samples every {settings.interval:g} s",
        *memory_lines(samples, windows),
        *latency_lines(samples, windows),
        *error_lines(samples),
        *invariant_lines(messages, live),
    ]


def message_verdict(m: MessageCheck) -> str:
    """The messages invariant alone, for messages.txt (written before the live check)."""
    problems = m.problems()
    verdict = "VIOLATED: " + "; ".join(problems) if problems else "holds"
    lines = [f"messages invariant {verdict}", f"missing: {' '.join(m.missing) or 'none'}"]
    lines.append(f"duplicated: {' '.join(m.duplicated) or 'none'}")
    lines.append(f"acknowledged twice: {' '.join(m.reacknowledged) or 'none'}")
    return "\n".join(lines)
