"""Chart geometry (dashboard/charts.py): everything inside the viewBox, scaled to the peak,
one unit per chart, and the bucket still filling marked."""

from __future__ import annotations

from auditq.stats import latency_field
from dashboard import charts

FIELDS = ("enqueued", "inserted", "dropped", "dead_lettered", "direct_failed", "failed_batches")


def point(minute: int, **counters) -> dict:
    return {"minute": minute, **{f: counters.get(f, 0) for f in FIELDS}, "counters": counters}


def test_one_hour_is_one_point_per_minute_scaled_to_the_peak():
    series = [point(m, enqueued=m % 7, inserted=10 if m == 30 else 0) for m in range(60)]
    series[5] = point(5, dropped=3, dead_lettered=2)
    series[6] = point(6, **{latency_field(40): 4})
    throughput, problems, _batches, latency = charts.build(series, "1h")
    enq, ins = throughput.series
    assert len(enq.points.split()) == 60
    ys = [float(p.split(",")[1]) for p in ins.points.split()]
    assert min(ys) == charts.PAD_TOP  # the peak touches the top
    assert all(0 <= y <= charts.HEIGHT for y in ys)
    assert throughput.peak == 10
    dropped, dead, _direct = problems.series
    ((drop_bar,), (dead_bar,)) = (dropped.bars, dead.bars)
    assert drop_bar["y"] > dead_bar["y"]  # dead letters stack on top of drops
    assert dead_bar["y"] == charts.PAD_TOP
    assert latency.peak == 50 and not latency.empty_note


def test_each_chart_has_one_unit_and_batches_are_not_added_to_events():
    # Issue 10: "failed" added failed batches to dead letters and direct failures.
    series = [point(m) for m in range(60)]
    series[10] = point(10, dropped=4, dead_lettered=1, direct_failed=2, failed_batches=50)
    throughput, problems, batches, latency = charts.build(series, "1h")
    assert throughput.unit == problems.unit == "events per minute"
    assert batches.unit == "batches per minute" and latency.unit == "ms"
    names = [s.name for s in problems.series]
    assert names == ["dropped", "dead-lettered", "direct writes failed"]
    assert problems.peak == 4 and problems.max_value == 5  # 4 dropped + 1 dead-lettered
    assert [s.name for s in batches.series] == ["failed batches"]
    assert batches.peak == 50


def test_the_minute_still_filling_is_marked_not_drawn_as_a_dip():
    series = [point(m, enqueued=100, inserted=100) for m in range(1000, 1060)]
    series[-1] = point(1059, enqueued=7, inserted=5, dropped=1)  # 4 s into the minute
    throughput, problems, *_ = charts.build(series, "1h", current_minute=1059)
    enq = throughput.series[0]
    assert len(enq.points.split()) == 59  # the solid line ends at the last whole minute
    assert enq.partial_points.split()[0] == enq.points.split()[-1]
    assert len(enq.partial_points.split()) == 2
    assert throughput.partial_note == "this minute so far"
    (drop_bar,) = problems.series[0].bars
    assert drop_bar["partial"] is True
    # Without the current minute in range, nothing is marked.
    whole = charts.build(series, "1h", current_minute=2000)[0]
    assert whole.partial_note == "" and whole.series[0].partial_points == ""
    assert len(whole.series[0].points.split()) == 60


def test_a_day_is_96_bars_of_15_minutes():
    series = [point(m, enqueued=1) for m in range(24 * 60)]
    throughput, _, _, latency = charts.build(series, "24h", current_minute=24 * 60 - 1)
    assert len(throughput.series[0].values) == 96
    assert throughput.series[0].values[0] == 15
    assert "15 min" in throughput.unit
    assert throughput.partial_note == "this 15 min so far"
    assert latency.empty_note and latency.series == []


def test_no_data_draws_flat_lines_not_errors():
    throughput, problems, _, _ = charts.build([point(m) for m in range(60)], "1h")
    assert throughput.peak == 0 and problems.series[0].bars == []
    assert charts.build([], "1h") == []
