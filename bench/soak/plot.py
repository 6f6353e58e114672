"""The PNG of a soak: one panel per sampled series, time in minutes on every x axis; the
first window (warm-up) and the last window, which the summary compares, are shaded."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from bench.soak.report import APP_PREFIXES
from bench.soak.sampler import Sample

#: The issue's targets after warm-up, drawn as dashed lines.
GATEWAY_TARGET_MIB = 100.0
WORKER_TARGET_MIB = 150.0

Series = dict[str, list[float | None]]
Values = Callable[[Sample], dict[str, float | None]]


@dataclass
class Panel:
    title: str
    series: Series
    log: bool = False
    target: float | None = None
    #: name -> (lows, highs): a shaded band around the series of that name.
    bands: dict[str, tuple[list[float | None], list[float | None]]] = field(default_factory=dict)


def _series(samples: Sequence[Sample], values: Values) -> Series:
    names: dict[str, None] = {}
    for sample in samples:
        names.update(dict.fromkeys(values(sample)))
    return {name: [values(s).get(name) for s in samples] for name in names}


def _quantiles(samples: Sequence[Sample], q: float) -> Series:
    def values(sample: Sample) -> dict[str, float | None]:
        found: dict[str, float | None] = {}
        for op, histogram in sample.stats.latency.items():
            value = histogram.quantile(q)
            found[op] = None if value is None else value * 1000
        return found

    return _series(samples, values)


def _rss_panel(samples: Sequence[Sample], title: str, names: list[str], target: float) -> Panel:
    """The sampled RSS of `names`, with the interval's floor..peak as a band."""
    series = {n: [s.rss.get(n) for s in samples] for n in names}
    bands = {
        n: (
            [s.rss_range[n][0] if n in s.rss_range else None for s in samples],
            [s.rss_range[n][1] if n in s.rss_range else None for s in samples],
        )
        for n in names
    }
    return Panel(title, series, target=target, bands=bands)


def _panels(samples: Sequence[Sample]) -> list[Panel]:
    last = samples[-1]
    workers = [n for n in last.rss if n.startswith("worker-")]
    context = [n for n in last.rss if not n.startswith(APP_PREFIXES)]
    return [
        _rss_panel(
            samples,
            "RSS gateway (MiB; band: floor..peak of the interval)",
            ["gateway"],
            GATEWAY_TARGET_MIB,
        ),
        _rss_panel(
            samples,
            "RSS workers (MiB; band: floor..peak of the interval)",
            workers,
            WORKER_TARGET_MIB,
        ),
        Panel(
            "memory of the rest (MiB; PostgreSQL: PSS of all its processes)",
            {n: [s.rss.get(n) for s in samples] for n in context},
            log=True,
        ),
        Panel("CPU (% of one core)", _series(samples, lambda s: s.cpu)),
        Panel("latency p99 per operation (ms)", _quantiles(samples, 0.99), log=True),
        Panel("latency p50 per operation (ms)", _quantiles(samples, 0.5), log=True),
        Panel(
            "successes per second",
            _series(
                samples, lambda s: {o: h.count / s.interval for o, h in s.stats.latency.items()}
            ),
            log=True,
        ),
        Panel(
            "errors per interval, by code",
            _series(samples, lambda s: {c: float(n) for c, n in s.stats.errors().items()}),
        ),
        Panel(
            "consumer lag per partition (records)",
            _series(samples, lambda s: {f"p{p:02d}": float(n) for p, n in s.lag.items()}),
        ),
        Panel(
            "open sockets",
            _series(
                samples,
                lambda s: {
                    **{f"{name} fds": n for name, n in s.sockets.items()},
                    "gateway streams": s.stream_sockets,
                    "clients' streams": s.stats.gauges.get("live_open"),
                },
            ),
        ),
        Panel(
            "load processes: worst event-loop lag in the interval (ms)",
            _series(
                samples,
                lambda s: {
                    k.removeprefix("loop_lag_ms_"): v
                    for k, v in s.stats.gauges.items()
                    if k.startswith("loop_lag_ms_")
                },
            ),
            log=True,
        ),
        Panel(
            f"machine: load average over 1 min ({os.cpu_count()} cores)",
            {"load1": [s.load1 for s in samples]},
        ),
    ]


def _draw(ax: Axes, minutes: list[float], panel: Panel) -> None:
    for name, values in sorted(panel.series.items()):
        points = [(m, v) for m, v in zip(minutes, values, strict=True) if v is not None]
        if not points:
            continue
        (line,) = ax.plot([p[0] for p in points], [p[1] for p in points], label=name, lw=1.2)
        if name in panel.bands:
            lows, highs = panel.bands[name]
            spans = [
                (m, lo, hi)
                for m, lo, hi in zip(minutes, lows, highs, strict=True)
                if lo is not None and hi is not None
            ]
            ax.fill_between(
                [x[0] for x in spans],
                [x[1] for x in spans],
                [x[2] for x in spans],
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
    ax.set_title(panel.title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if panel.log and any(v for values in panel.series.values() for v in values if v):
        ax.set_yscale("log")
    if panel.target is not None:
        ax.axhline(panel.target, color="red", linestyle="--", linewidth=0.8)
    if any(v is not None for values in panel.series.values() for v in values):
        ax.legend(fontsize=7, ncol=2, loc="upper left")
    else:
        ax.text(0.5, 0.5, "none", transform=ax.transAxes, ha="center", color="grey")


def plot(samples: Sequence[Sample], window: float, path: Path, title: str) -> None:
    """Write the PNG of `samples` to `path`."""
    minutes = [s.t / 60 for s in samples]
    end = minutes[-1]
    figure, axes = plt.subplots(6, 2, figsize=(14, 24), sharex=True)
    for ax, panel in zip(axes.flat, _panels(samples), strict=True):
        _draw(ax, minutes, panel)
        ax.axvspan(0, window / 60, color="grey", alpha=0.12)
        ax.axvspan(max(0.0, end - window / 60), end, color="tab:blue", alpha=0.08)
    for ax in axes[-1]:
        ax.set_xlabel("minutes into the load")
    figure.suptitle(title, fontsize=12)
    figure.tight_layout(rect=(0, 0, 1, 0.98))
    figure.savefig(path, dpi=80)
    plt.close(figure)
