"""Chart geometry (dashboard/charts.py): everything inside the viewBox, scaled to the peak."""

from __future__ import annotations

from auditq.stats import latency_field
from dashboard import charts


def point(minute: int, **counters) -> dict:
    return {
        "minute": minute,
        "enqueued": counters.get("enqueued", 0),
        "inserted": counters.get("inserted", 0),
        "dropped": counters.get("dropped", 0),
        "failed": counters.get("failed", 0),
        "counters": counters,
    }


def test_one_hour_is_one_point_per_minute_scaled_to_the_peak():
    series = [point(m, enqueued=m % 7, inserted=10 if m == 30 else 0) for m in range(60)]
    series[5] = point(5, dropped=3, failed=2)
    series[6] = point(6, **{latency_field(40): 4})
    throughput, problems, latency = charts.build(series, "1h")
    enq, ins = throughput.series
    assert len(enq.points.split()) == 60
    ys = [float(p.split(",")[1]) for p in ins.points.split()]
    assert min(ys) == charts.PAD_TOP  # the peak touches the top
    assert all(0 <= y <= charts.HEIGHT for y in ys)
    assert throughput.peak == 10
    (drop_bar,), (fail_bar,) = (s.bars for s in problems.series)
    assert drop_bar["y"] > fail_bar["y"]  # failures stack on top of drops
    assert fail_bar["y"] == charts.PAD_TOP
    assert latency.peak == 50 and not latency.empty_note


def test_a_day_is_96_bars_of_15_minutes():
    series = [point(m, enqueued=1) for m in range(24 * 60)]
    throughput, _, latency = charts.build(series, "24h")
    assert len(throughput.series[0].values) == 96
    assert throughput.series[0].values[0] == 15
    assert "15 min" in throughput.unit
    assert latency.empty_note and latency.series == []


def test_no_data_draws_flat_lines_not_errors():
    throughput, problems, _ = charts.build([point(m) for m in range(60)], "1h")
    assert throughput.peak == 0 and problems.series[0].bars == []
    assert charts.build([], "1h") == []
