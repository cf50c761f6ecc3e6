"""Drain throughput per store, against raw bulk inserts, the original plan and RQ.

    python bench/drain.py [--events 200000]

From a backlog of --events queued events, time how long 1 and 2 `python -m worker`
processes take to land every row in audit_logs, per store (postgres: COPY path; supabase:
PostgREST behind nginx), the CPU the workers, the store's processes and Redis spend per
event, and how busy the cores were meanwhile. Baselines in the same run, with the same rows:
- raw bulk insert straight into the same store (COPY of each batch; PostgREST bulk POST of
  the same batch size through the same native proxy, nginx),
- the original plan (LPUSH/RPOP, batches of 100 every 5 s),
- an RQ worker inserting one event per job.
Also sweeps fixed batch sizes (one worker, postgres store) for the throughput chart.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import orjson
import psutil
import psycopg
import redis
from common import ROOT, Services, cpu_seconds, save, services, table
from rq import Queue as RQQueue

from auditq.client import AuditClient
from auditq.config import load_settings
from auditq.events import ROW_COLUMNS, build_event, to_row
from auditq.keys import GROUP
from auditq.stores.copy import binary_copy
from auditq.stores.postgres import PostgresStore
from bench.jobs import insert_event

BATCH = 1000  # the raw PostgREST baseline's body size (issue 12's baseline)
# The raw COPY baseline's batch: COPY gains up to 5,000 rows a statement (the fixed-size
# sweep below), and at 1,000 it ran 1.1x slower, so that is where it runs at its best.
COPY_BATCH = 5000


def events(n: int) -> list[dict]:
    return [
        {
            "action": "user.role_change",
            "actor_id": f"u_{i % 5000}",
            "target_type": "user",
            "target_id": f"u_{i % 977}",
            "ip": "198.51.100.23",
            "tenant_id": "t_1",
            "metadata": {"from": "member", "to": "admin", "i": i},
        }
        for i in range(n)
    ]


def truncate(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("set session_replication_role = replica")
        conn.execute("truncate public.audit_logs")


def row_count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("select count(*) from public.audit_logs").fetchone()[0]


def fill(svc: Services, n: int) -> None:
    client = redis.Redis.from_url(svc.redis.url)
    client.flushdb()
    settings = load_settings(redis_url=svc.redis.url, max_queue=10_000_000, redis_timeout=30)
    producer = AuditClient(settings)
    batch = events(n)
    for start in range(0, n, 5000):
        producer.log_many(batch[start : start + 5000])
    assert client.xlen("audit:events") == n


def worker_env(svc: Services, store: str, **knobs: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDITQ_", "SUPABASE_"))}
    env.update(
        REDIS_URL=svc.redis.url,
        AUDITQ_STORE=store,
        DATABASE_URL=svc.dsn,
        AUDITQ_LOG_LEVEL="WARNING",
        AUDITQ_DRAIN_INTERVAL="0.05",
    )
    if store == "supabase":
        env.update(
            SUPABASE_URL=svc.supabase.url, SUPABASE_SERVICE_ROLE_KEY=svc.supabase.service_key
        )
    env.update({f"AUDITQ_{k.upper()}": str(v) for k, v in knobs.items()})
    return env


@dataclass
class Run:
    """One timed drain: events/s and the CPU each side spent per event, in microseconds."""

    rate: float
    client_us: float  # the worker processes (auditq) or the baseline script (raw)
    store_us: float  # Postgres, plus PostgREST on the supabase store
    proxy_us: float  # nginx in front of PostgREST (supabase store only)
    redis_us: float  # Redis: auditq's reads and acks (a raw run: its idle timers only)
    busy: float  # the share of the machine's cores busy meanwhile, whoever used them


class CpuMeter:
    """CPU seconds of the store's processes, and of Redis, between start() and stop(), and
    how busy the cores were from start() to busy()."""

    def __init__(self, svc: Services, store: str) -> None:
        self.store_pids = [svc.postgres.pid]
        self.proxy_pids: list[int] = []
        self.redis_pid = svc.redis.pid
        if store == "supabase":
            self.store_pids.append(svc.supabase.server.pid)
            self.proxy_pids.append(svc.supabase.proxy.pid)

    def _read(self) -> tuple[float, ...]:
        return (
            sum(cpu_seconds(pid) for pid in self.store_pids),
            sum(cpu_seconds(pid) for pid in self.proxy_pids),
            cpu_seconds(self.redis_pid),
        )

    def start(self) -> None:
        self._start = self._read()
        psutil.cpu_percent()  # the start of the window busy() reads (psutil keeps it)

    def busy(self) -> float:
        """The share of the machine's cores in use since start(), by anything (other work
        on these shared cores counts too)."""
        return psutil.cpu_percent() / 100

    def stop(self) -> tuple[float, float, float]:
        """(store, proxy, Redis) CPU seconds."""
        store, proxy, redis_cpu = (
            end - start for end, start in zip(self._read(), self._start, strict=True)
        )
        return store, proxy, redis_cpu


def drain_rate(svc: Services, store: str, n: int, workers: int, **knobs: object) -> Run:
    truncate(svc.dsn)
    fill(svc, n)
    env = worker_env(svc, store, **knobs)
    client = redis.Redis.from_url(svc.redis.url)
    meter = CpuMeter(svc, store)
    procs = [
        subprocess.Popen([sys.executable, "-m", "worker"], env=env, cwd=ROOT)
        for _ in range(workers)
    ]
    try:
        # Timed from the first worker's first heartbeat, its CPU counted from every worker's:
        # a worker beats first as its scheduler starts the drain, once imports, set-up and
        # connects are done (its own started_at is taken earlier, before the jobs' modules
        # are imported: 0.2 s here). Start-up is not drain work; polled often, so at most a
        # few ms of draining go uncounted.
        started = None
        while (seen := client.zcard("audit:workers")) < workers:
            if seen and started is None:
                started = time.time()
            time.sleep(0.002)
        started = started or time.time()
        meter.start()
        worker_start = sum(cpu_seconds(p.pid) for p in procs)
        # Watched in Redis, not with count(*) on the table, which would cost the store CPU
        # the run is measured by: an entry is acked (and deleted) only after its commit,
        # so an empty stream with nothing pending means every row is stored.
        while client.xlen("audit:events") or client.xpending("audit:events", GROUP)["pending"]:
            time.sleep(0.02)
        finished = time.time()
        busy = meter.busy()
        worker_cpu = sum(cpu_seconds(p.pid) for p in procs) - worker_start
        store_cpu, proxy_cpu, redis_cpu = meter.stop()
        assert row_count(svc.dsn) == n
        elapsed = finished - started  # from the first worker ready to the last row
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    per_event = 1e6 / n
    return Run(
        n / elapsed,
        worker_cpu * per_event,
        store_cpu * per_event,
        proxy_cpu * per_event,
        redis_cpu * per_event,
        busy,
    )


def _timed_raw(svc: Services, store: str, n: int, insert) -> Run:
    meter = CpuMeter(svc, store)
    meter.start()
    cpu = time.process_time()
    started = time.perf_counter()
    insert()
    elapsed = time.perf_counter() - started
    busy = meter.busy()
    cpu = time.process_time() - cpu
    # The baseline's backend exits as its connection closes: its CPU counts once the
    # postmaster has reaped it.
    time.sleep(0.5)
    store_cpu, proxy_cpu, redis_cpu = meter.stop()
    per_event = 1e6 / n
    return Run(
        n / elapsed,
        cpu * per_event,
        store_cpu * per_event,
        proxy_cpu * per_event,
        redis_cpu * per_event,
        busy,
    )


def raw_copy_rate(svc: Services, n: int) -> Run:
    return _timed_raw(svc, "postgres", n, raw_copy(svc, n))


def raw_copy(svc: Services, n: int) -> Callable[[], None]:
    """The raw COPY baseline, its rows prepared and its connection open (neither part of
    what is measured, as a worker connects before its first heartbeat): one client COPYing
    them in COPY_BATCH-row statements, at its best: in binary format, as auditq does
    (bench/copy_format.py: 1.1x the rate of text COPY), each column's type declared once
    per COPY and metadata as orjson's text. (Letting psycopg look up each value's dumper
    and encode metadata with the stdlib json, as this baseline did once, made it 1.1-1.3x
    slower: a handicap auditq does not share.)"""
    truncate(svc.dsn)
    rows = [build_event(e) for e in events(n)]
    cols = ["id", "occurred_at", "action", "actor_id", "target_type", "target_id", "tenant_id"]
    cols += ["ip", "metadata"]
    types = ["uuid", "timestamptz", "text", "text", "text", "text", "text", "inet", "jsonb"]
    conn = psycopg.connect(svc.dsn)

    def insert() -> None:
        with conn:
            for start in range(0, n, COPY_BATCH):
                with binary_copy(conn.cursor(), "public.audit_logs", cols, types) as copy:
                    for e in rows[start : start + COPY_BATCH]:
                        copy.write_row(
                            (
                                e.id,
                                e.occurred_at,
                                e.action,
                                e.actor_id,
                                e.target_type,
                                e.target_id,
                                e.tenant_id,
                                e.ip,
                                orjson.dumps(e.metadata).decode(),
                            )
                        )
                conn.commit()

    return insert


def raw_postgrest_rate(svc: Services, n: int) -> Run:
    return _timed_raw(svc, "supabase", n, raw_postgrest(svc, n))


def raw_postgrest(svc: Services, n: int) -> Callable[[], None]:
    """The raw PostgREST baseline, its rows prepared and its HTTP client made (neither part
    of what is measured): one client POSTing them in BATCH-row bodies, as a plain script
    would."""
    truncate(svc.dsn)
    rows = [to_row(build_event(e), "queue") for e in events(n)]
    key = svc.supabase.service_key
    headers = {
        "apikey": key,
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "Prefer": "return=minimal",
    }
    params = {"columns": ",".join(ROW_COLUMNS)}

    client = httpx.Client(base_url=f"{svc.supabase.url}/rest/v1", headers=headers, timeout=60)

    def insert() -> None:
        with client as h:
            for start in range(0, n, BATCH):
                body = orjson.dumps(rows[start : start + BATCH])
                h.post("/audit_logs", params=params, content=body).raise_for_status()

    return insert


def original_plan_rate(svc: Services, seconds: float) -> float:
    """LPUSH/RPOP, 100 per batch, one batch every 5 s (DESIGN.md, "Where this comes from")."""
    truncate(svc.dsn)
    client = redis.Redis.from_url(svc.redis.url)
    client.delete("audit:queue")
    for _ in range(20):
        client.lpush("audit:queue", *[build_event(e).to_json() for e in events(1000)])
    store = PostgresStore(svc.dsn)
    started = time.perf_counter()
    inserted = 0
    while time.perf_counter() - started < seconds:
        batch = client.rpop("audit:queue", 100) or []
        inserted += store.insert_events([build_event(json.loads(b)) for b in batch])
        time.sleep(5)
    return inserted / (time.perf_counter() - started)


def rq_rate(svc: Services, n: int) -> float:
    truncate(svc.dsn)
    client = redis.Redis.from_url(svc.redis.url)
    client.flushdb()
    queue = RQQueue("bench", connection=client)

    for e in events(n):
        row = to_row(build_event(e), "queue")
        queue.enqueue(
            insert_event,
            {
                "id": row["id"],
                "occurred_at": row["occurred_at"],
                "action": row["action"],
                "actor_id": row["actor_id"],
                "metadata": json.dumps(row["metadata"]),
            },
        )
    env = dict(os.environ, BENCH_DATABASE_URL=svc.dsn, PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    subprocess.run(
        ["rq", "worker", "--burst", "--url", svc.redis.url, "bench", "-q"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    elapsed = time.perf_counter() - started
    assert row_count(svc.dsn) == n
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rq-events", type=int, default=2_000)
    parser.add_argument("--plan-seconds", type=float, default=15)
    parser.add_argument("--sweep", default="100,500,1000,2000,5000")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of baseline + auditq")
    parser.add_argument("--stores", default="postgres,supabase")
    args = parser.parse_args()
    n = args.events
    load = os.getloadavg()

    raw_rate = {"postgres": raw_copy_rate, "supabase": raw_postgrest_rate}
    with services() as svc:
        plan = original_plan_rate(svc, args.plan_seconds)
        rq = rq_rate(svc, args.rq_events)
        # The machine is shared: each round measures the raw baseline right before the
        # auditq runs it is compared with, and the table keeps each ratio's median round.
        raw: dict[str, float] = {}
        spread: dict[str, tuple[float, float]] = {}
        rows = []
        for store in args.stores.split(","):
            rounds: list[tuple[Run, dict[int, Run]]] = []
            for _ in range(args.repeat):
                base = raw_rate[store](svc, n)
                rounds.append((base, {w: drain_rate(svc, store, n, w) for w in (1, 2)}))
            raw[store] = statistics.median(base.rate for base, _ in rounds)
            spread[store] = (min(b.rate for b, _ in rounds), max(b.rate for b, _ in rounds))
            mid = len(rounds) // 2
            base = sorted((b for b, _ in rounds), key=lambda r: r.rate)[mid]
            rows.append([store, "raw", f"{base.rate:,.0f}", "", 1.0, "", *_cpu(base), "", ""])
            for workers in (1, 2):
                ratios = sorted(
                    ((runs[workers].rate / b.rate, runs[workers], b) for b, runs in rounds),
                    key=lambda r: r[0],
                )
                ratio, run, b = ratios[mid]
                rows.append(
                    [
                        store,
                        workers,
                        f"{run.rate:,.0f}",
                        f"{b.rate:,.0f}",
                        ratio,
                        f"{ratios[0][0]:.2f}-{ratios[-1][0]:.2f}",
                        *_cpu(run),
                        f"{run.rate / rq:,.0f}",
                        f"{run.rate / plan:,.0f}",
                    ]
                )
        sweep = []
        for size in [int(s) for s in args.sweep.split(",") if s]:
            run = drain_rate(
                svc,
                "postgres",
                min(n, 100_000),
                1,
                batch_min=size,
                batch_start=size,
                batch_max=size,
            )
            sweep.append([size, f"{run.rate:,.0f}", run.rate / raw["postgres"]])
    after = os.getloadavg()

    body = table(
        [
            "store",
            "workers",
            "events/s",
            "raw bulk events/s (same round)",
            "ratio to raw (median)",
            "ratio range",
            "client CPU us/event",
            "store CPU us/event",
            "proxy CPU us/event",
            "Redis CPU us/event",
            "cores busy",
            "x RQ",
            "x original plan",
        ],
        rows,
    )
    body += (
        f"\n\nMedian of {args.repeat} rounds, each a baseline run followed by the auditq runs "
        "it is compared with; the `raw` row is the median baseline round. CPU per event: "
        "client = the worker processes (from their first heartbeat) or the baseline script; "
        "store = Postgres (postmaster and backends), plus PostgREST on the supabase store; "
        "proxy = nginx; Redis = the stream's server (the raw runs do not use it). Cores busy: "
        f"the share of the {os.cpu_count()} cores in use during the run, by anything "
        "(psutil), so the budget shows: CPU per event x events/s against the cores. "
        "The raw baselines' rates across the rounds: "
        + "; ".join(f"{store} {low:,.0f}-{high:,.0f}" for store, (low, high) in spread.items())
        + " events/s."
        f"\n\nBaselines: raw bulk = {COPY_BATCH}-row COPY (postgres; binary format as "
        "auditq's, column types declared, metadata as orjson's text) or "
        f"{BATCH}-row PostgREST bulk POST "
        f"(supabase; orjson body, return=minimal, columns=) of the same rows; RQ one insert "
        f"per job = {rq:,.1f} events/s ({args.rq_events} jobs, `rq worker --burst`); original "
        f"plan (100 per 5 s) = {plan:,.1f} events/s over {args.plan_seconds:.0f} s. PostgREST "
        "is reached through nginx (bench/nginx.py, a native proxy as Supabase's gateway is) "
        "in both the auditq and the raw runs."
        f"\n\nLoad average (1/5/15 min) at the start: {load[0]:.2f} / {load[1]:.2f} / "
        f"{load[2]:.2f}, at the end: {after[0]:.2f} / {after[1]:.2f} / {after[2]:.2f} "
        f"on {os.cpu_count()} cores"
        + (" (a loaded machine: other work shared the cores)." if max(load + after) > 1 else ".")
    )
    if sweep:
        body += "\n\nFixed batch sizes, 1 worker, postgres store:\n\n" + table(
            ["batch size", "events/s", "ratio to raw COPY"], sweep
        )
    command = f"python bench/drain.py --events {n} --repeat {args.repeat}"
    if args.stores != "postgres,supabase":
        command += f" --stores {args.stores}"
    save("Drain throughput", command, body)
    if sweep:
        chart(sweep)


def _cpu(run: Run) -> list[str]:
    proxy = f"{run.proxy_us:.1f}" if run.proxy_us else ""
    redis_us = f"{run.redis_us:.1f}" if run.redis_us >= 0.05 else ""
    return [f"{run.client_us:.1f}", f"{run.store_us:.1f}", proxy, redis_us, f"{run.busy:.2f}"]


def chart(sweep: list[list]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r[0] for r in sweep]
    rates = [float(r[1].replace(",", "")) for r in sweep]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(sizes, rates, marker="o")
    ax.set_xscale("log")
    ax.set_xlabel("batch size (events)")
    ax.set_ylabel("events/s to audit_logs")
    ax.set_title("Drain throughput by batch size (1 worker, postgres store)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(ROOT / "bench" / "throughput_by_batch.png", dpi=110)


if __name__ == "__main__":
    main()
