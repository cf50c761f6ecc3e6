"""Server-rendered SVG charts: geometry here, markup in ``templates/partials/chart.html``.

No JavaScript chart library and no inline styles (the CSP forbids them): the SVG uses
presentation attributes for geometry and CSS classes for colour, so dark mode applies.

Each chart has one unit (events, batches or ms), and each series is named as the overview's
cards name it. The last bucket, when it holds the current minute, is still filling: it is
drawn dashed (lines) or faded (bars), so its dip does not read as a drop in traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from auditq.stats import latency_percentile

WIDTH = 600
HEIGHT = 140
PAD_TOP = 8
PAD_BOTTOM = 4


@dataclass
class Series:
    name: str
    css: str  # class name: series colour comes from the stylesheet
    kind: str  # "line" | "bar"
    values: list[float]
    points: str = ""  # the line through the complete buckets
    partial_points: str = ""  # its last segment, into the bucket still filling (dashed)
    bars: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Chart:
    title: str
    unit: str
    series: list[Series]
    start_label: str
    end_label: str
    max_value: float  # the top of the y scale (at least 1)
    width: int = WIDTH
    height: int = HEIGHT
    empty_note: str = ""  # shown instead of the series when there is nothing to draw
    partial_note: str = ""  # says the last bucket is still filling, when it is

    @property
    def peak(self) -> float:
        return max((v for s in self.series for v in s.values), default=0)

    @property
    def summary(self) -> str:
        parts = [f"{s.name}: last {fmt(s.values[-1]) if s.values else 0}" for s in self.series]
        return f"{self.title}, {self.start_label} to {self.end_label}; " + ", ".join(parts)


def fmt(value: float | None) -> str:
    if value is None:
        return "–"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def _buckets(series: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [series[i : i + size] for i in range(0, len(series), size)]


def _scale(values: list[list[float]]) -> float:
    top = max((v for vs in values for v in vs), default=0)
    return float(top) if top > 0 else 1.0


def _y(value: float, top: float) -> float:
    usable = HEIGHT - PAD_TOP - PAD_BOTTOM
    return round(HEIGHT - PAD_BOTTOM - (value / top) * usable, 1)


def _layout(chart: Chart, n: int, partial: bool) -> Chart:
    step = WIDTH / max(n, 1)
    complete = n - 1 if partial else n
    for s in chart.series:
        if s.kind != "line":
            continue
        xy = [
            f"{round(step * i + step / 2, 1)},{_y(v, chart.max_value)}"
            for i, v in enumerate(s.values)
        ]
        s.points = " ".join(xy[:complete])
        if partial:
            s.partial_points = " ".join(xy[max(complete - 1, 0) :])
    stacked = [0.0] * n
    for s in chart.series:
        if s.kind != "bar":
            continue
        for i, v in enumerate(s.values):
            if v <= 0:
                continue
            y_top = _y(stacked[i] + v, chart.max_value)
            y_base = _y(stacked[i], chart.max_value)
            s.bars.append(
                {
                    "x": round(step * i + step * 0.1, 1),
                    "y": y_top,
                    "w": round(max(step * 0.8, 0.5), 1),
                    "h": round(max(y_base - y_top, 0.5), 1),
                    "partial": i >= complete,
                }
            )
            stacked[i] += v
    return chart


def build(
    series: list[dict[str, Any]], range_name: str, current_minute: int | None = None
) -> list[Chart]:
    """Charts for the overview: throughput, drops and failures (events), failed batches,
    batch latency (p95). ``current_minute`` marks the bucket that is still filling."""
    if not series:
        return []
    size = 15 if range_name == "24h" else 1  # 24 h: 96 bars of 15 minutes
    groups = _buckets(series, size)
    per = "per 15 min" if size > 1 else "per minute"
    partial = current_minute is not None and groups[-1][-1]["minute"] >= current_minute
    note = ("this 15 min so far" if size > 1 else "this minute so far") if partial else ""

    def total(name: str) -> list[float]:
        return [sum(p[name] for p in g) for g in groups]

    def p95(group: list[dict[str, Any]]) -> float:
        merged: dict[str, float] = {}
        for p in group:
            for k, v in p["counters"].items():
                if k.startswith("lat_le_"):
                    merged[k] = merged.get(k, 0) + v
        value = latency_percentile(merged, 0.95)
        return 0.0 if value is None or value == float("inf") else float(value)

    start = _label(groups[0][0]["minute"], range_name)
    end = _label(groups[-1][-1]["minute"], range_name)
    enq, ins = total("enqueued"), total("inserted")
    drops, dead, direct = total("dropped"), total("dead_lettered"), total("direct_failed")
    failed_batches = total("failed_batches")
    lat = [p95(g) for g in groups]
    charts = [
        Chart(
            "Throughput",
            f"events {per}",
            [Series("enqueued", "s-enq", "line", enq), Series("inserted", "s-ins", "line", ins)],
            start,
            end,
            _scale([enq, ins]),
            partial_note=note,
        ),
        Chart(
            "Drops and failures",
            f"events {per}",
            [
                # Two fates of an event, stacked; a failed direct write is an attempt (the
                # event was then queued, or dropped and counted there), so it is a line.
                Series("dropped", "s-drop", "bar", drops),
                Series("dead-lettered", "s-dead", "bar", dead),
                Series("direct writes failed", "s-fail", "line", direct),
            ],
            start,
            end,
            _scale([[d + x for d, x in zip(drops, dead, strict=True)], direct]),
            partial_note=note,
        ),
        Chart(
            "Failed batches",
            f"batches {per}",
            [Series("failed batches", "s-batch", "bar", failed_batches)],
            start,
            end,
            _scale([failed_batches]),
            partial_note=note,
        ),
        Chart(
            "Batch latency p95",
            "ms",
            [Series("p95", "s-lat", "line", lat)] if any(lat) else [],
            start,
            end,
            _scale([lat]),
            empty_note="" if any(lat) else "no batches stored in this range",
            partial_note=note if any(lat) else "",
        ),
    ]
    return [_layout(c, len(groups), partial) for c in charts]


def _label(minute: int, range_name: str) -> str:
    moment = datetime.fromtimestamp(minute * 60, UTC)
    return moment.strftime("%H:%M UTC" if range_name == "1h" else "%b %d %H:%M UTC")
