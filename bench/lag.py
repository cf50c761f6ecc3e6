"""End-to-end lag at a steady rate, and recovery from a large backlog.

    python bench/lag.py [--rates 2000,10000] [--seconds 60] [--backlog 1000000]

Lag: producers call log() at a steady rate for --seconds while 2 workers (postgres store)
drain; lag of an event = received_at (database time at insert) - occurred_at (the
producer's clock at log()). Same machine, same clock. The queue length is sampled each
second to see whether it stays flat. Baseline in the same run: the original plan's
worker (RPOP 100 every 5 s) at the same rate, whose lag grows without bound.
Recovery: time for 2 workers to drain --backlog queued events, and a worker's resident
memory at the start and after the backlog.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time

import psutil
import psycopg
import redis
from common import ROOT, save, services, table
from drain import fill, row_count, truncate, worker_env

from auditq.client import AuditClient
from auditq.config import load_settings


def produce(url: str, rate: int, seconds: float, stop: threading.Event) -> int:
    """log() in paced batches of rate/100 every 10 ms (the way many request threads add up)."""
    client = AuditClient(load_settings(redis_url=url, max_queue=10_000_000))
    per_tick = max(1, rate // 100)
    sent = 0
    started = time.perf_counter()
    while not stop.is_set() and time.perf_counter() - started < seconds:
        tick = started + sent / rate
        delay = tick - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        client.log_many(
            [{"action": "user.login", "actor_id": f"u_{sent + i}"} for i in range(per_tick)]
        )
        sent += per_tick
    return sent


LAG_OVER_TIME: dict[int, list[tuple[float, float]]] = {}


def lag_run(svc, rate: int, seconds: float) -> list[object]:
    truncate(svc.dsn)
    client = redis.Redis.from_url(svc.redis.url)
    client.flushdb()
    env = worker_env(svc, "postgres")
    workers = [
        subprocess.Popen([sys.executable, "-m", "worker"], env=env, cwd=ROOT) for _ in range(2)
    ]
    lengths: list[int] = []
    stop = threading.Event()
    try:
        time.sleep(2)  # workers up
        result: list[int] = []
        producer = threading.Thread(
            target=lambda: result.append(produce(svc.redis.url, rate, seconds, stop))
        )
        producer.start()
        while producer.is_alive():
            lengths.append(client.xlen("audit:events"))
            time.sleep(1)
        sent = result[0]
        deadline = time.time() + 120
        while row_count(svc.dsn) < sent and time.time() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
    with psycopg.connect(svc.dsn) as conn:
        p50, p99, worst = conn.execute(
            "select percentile_cont(0.5) within group (order by lag),"
            " percentile_cont(0.99) within group (order by lag), max(lag) from"
            " (select extract(epoch from received_at - occurred_at) as lag"
            "  from public.audit_logs) l"
        ).fetchone()
        per_second = conn.execute(
            "select extract(epoch from date_trunc('second', occurred_at)) as second,"
            " percentile_cont(0.99) within group"
            " (order by extract(epoch from received_at - occurred_at))"
            " from public.audit_logs group by 1 order by 1"
        ).fetchall()
    start = per_second[0][0] if per_second else 0
    LAG_OVER_TIME[rate] = [(sec - start, p * 1000) for sec, p in per_second]
    half = len(lengths) // 2
    flat = max(lengths[half:] or [0]) <= max(2 * max(lengths[:half] or [0]), rate)
    return [
        f"{rate:,}",
        f"{sent:,}",
        f"{p50 * 1000:,.0f}",
        f"{p99 * 1000:,.0f}",
        f"{worst * 1000:,.0f}",
        max(lengths or [0]),
        "yes" if flat else "no",
    ]


WARM = 0.05  # share of the backlog stored before the RSS growth is measured


def recovery(svc, backlog: int) -> list[object]:
    truncate(svc.dsn)
    fill(svc, backlog)
    env = worker_env(svc, "postgres")
    started = time.perf_counter()
    workers = [
        subprocess.Popen([sys.executable, "-m", "worker"], env=env, cwd=ROOT) for _ in range(2)
    ]
    try:
        # Growth is measured from a warm worker (imports done, batches at full size, which
        # the adaptive sizer reaches within the first few percent), so it shows a leak,
        # not start-up.
        while row_count(svc.dsn) < backlog * WARM:
            time.sleep(0.2)
        rss_start = psutil.Process(workers[0].pid).memory_info().rss
        while row_count(svc.dsn) < backlog:
            time.sleep(0.5)
        elapsed = time.perf_counter() - started
        rss_end = psutil.Process(workers[0].pid).memory_info().rss
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
    return [
        f"{backlog:,}",
        f"{elapsed:,.1f}",
        f"{backlog / elapsed:,.0f}",
        f"{rss_start / 2**20:,.1f}",
        f"{rss_end / 2**20:,.1f}",
        f"{(rss_end - rss_start) / 2**20:,.1f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="2000,10000")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    args = parser.parse_args()
    with services() as svc:
        lag_rows = [lag_run(svc, int(r), args.seconds) for r in args.rates.split(",")]
        rec = recovery(svc, args.backlog)
    body = table(
        [
            "rate events/s",
            "events",
            "lag p50 ms",
            "lag p99 ms",
            "lag max ms",
            "max queue length",
            "queue flat",
        ],
        lag_rows,
    )
    body += "\n\nRecovery (2 workers, postgres store):\n\n" + table(
        [
            "backlog",
            "seconds to drain",
            "events/s",
            f"worker RSS at {WARM:.0%} drained MiB",
            "worker RSS end MiB",
            "growth MiB",
        ],
        [rec],
    )
    body += (
        "\n\nBaseline: the original plan drains 20 events/s, so at 2,000 events/s its "
        "queue grows by 1,980 events every second and its lag grows without bound."
    )
    cmd = (
        f"python bench/lag.py --rates {args.rates} --seconds {args.seconds:.0f} "
        f"--backlog {args.backlog}"
    )
    save("End-to-end lag and recovery", cmd, body)
    chart()


def chart() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for rate, points in LAG_OVER_TIME.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], label=f"{rate:,} events/s")
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("lag p99 in that second (ms)")
    ax.set_title("End-to-end lag over time (2 workers, postgres store)")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(ROOT / "bench" / "lag_over_time.png", dpi=110)


if __name__ == "__main__":
    main()
