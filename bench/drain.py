"""Drain throughput per store, against raw bulk inserts, the original plan and RQ.

    python bench/drain.py [--events 200000]

From a backlog of --events queued events, time how long 1 and 2 `python -m worker`
processes take to land every row in audit_logs, per store (postgres: COPY path; supabase:
supabase-py through PostgREST). Baselines in the same run, with the same rows:
- raw bulk insert straight into the same store (COPY of each batch; PostgREST bulk POST of
  the same batch size through the same gateway),
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

import httpx
import psycopg
import redis
from common import ROOT, Services, save, services, table
from rq import Queue as RQQueue

from auditq.client import AuditClient
from auditq.config import load_settings
from auditq.events import build_event, to_row
from auditq.stores.postgres import PostgresStore
from bench.jobs import insert_event

BATCH = 1000  # raw baselines' batch size; workers start here too and may grow


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


def drain_rate(svc: Services, store: str, n: int, workers: int, **knobs: object) -> float:
    truncate(svc.dsn)
    fill(svc, n)
    env = worker_env(svc, store, **knobs)
    procs = [
        subprocess.Popen([sys.executable, "-m", "worker"], env=env, cwd=ROOT)
        for _ in range(workers)
    ]
    try:
        while row_count(svc.dsn) < n:
            time.sleep(0.05)
        finished = time.time()
        # From the first worker ready (its own started_at, after imports and connects) to
        # the last row: interpreter start-up is not drain time.
        client = redis.Redis.from_url(svc.redis.url)
        members = client.zrange("audit:workers", 0, -1)
        started = min(float(client.hget(b"audit:worker:" + m, "started_at")) for m in members)
        elapsed = finished - started
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    return n / elapsed


def raw_copy_rate(svc: Services, n: int) -> float:
    truncate(svc.dsn)
    rows = [build_event(e) for e in events(n)]
    cols = "id, occurred_at, action, actor_id, target_type, target_id, tenant_id, ip, metadata"
    started = time.perf_counter()
    with psycopg.connect(svc.dsn) as conn:
        for start in range(0, n, BATCH):
            with conn.cursor().copy(f"copy public.audit_logs ({cols}) from stdin") as copy:
                for e in rows[start : start + BATCH]:
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
                            psycopg.types.json.Jsonb(e.metadata),
                        )
                    )
            conn.commit()
    return n / (time.perf_counter() - started)


def raw_postgrest_rate(svc: Services, n: int) -> float:
    truncate(svc.dsn)
    rows = [to_row(build_event(e), "queue") for e in events(n)]
    key = svc.supabase.service_key
    headers = {"apikey": key, "Authorization": f"Bearer {key}", "Prefer": "return=minimal"}
    started = time.perf_counter()
    with httpx.Client(base_url=f"{svc.supabase.url}/rest/v1", headers=headers, timeout=60) as h:
        for start in range(0, n, BATCH):
            h.post("/audit_logs", json=rows[start : start + BATCH]).raise_for_status()
    return n / (time.perf_counter() - started)


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
    args = parser.parse_args()
    n = args.events

    raw_rate = {"postgres": raw_copy_rate, "supabase": raw_postgrest_rate}
    with services() as svc:
        plan = original_plan_rate(svc, args.plan_seconds)
        rq = rq_rate(svc, args.rq_events)
        # The machine is shared: each round measures the raw baseline right before the
        # auditq runs it is compared with, and the table keeps each ratio's median round.
        raw: dict[str, float] = {}
        rows = []
        for store in ("postgres", "supabase"):
            rounds = []
            for _ in range(args.repeat):
                base = raw_rate[store](svc, n)
                rounds.append((base, {w: drain_rate(svc, store, n, w) for w in (1, 2)}))
            raw[store] = statistics.median(base for base, _ in rounds)
            for workers in (1, 2):
                ratios = sorted(
                    (rates[workers] / base, rates[workers], base) for base, rates in rounds
                )
                ratio, rate, base = ratios[len(ratios) // 2]
                rows.append(
                    [
                        store,
                        workers,
                        f"{rate:,.0f}",
                        f"{base:,.0f}",
                        ratio,
                        f"{min(r[0] for r in ratios):.2f}-{max(r[0] for r in ratios):.2f}",
                        rate / rq,
                        rate / plan,
                    ]
                )
        sweep = []
        for size in [int(s) for s in args.sweep.split(",")]:
            rate = drain_rate(
                svc,
                "postgres",
                min(n, 100_000),
                1,
                batch_min=size,
                batch_start=size,
                batch_max=size,
            )
            sweep.append([size, f"{rate:,.0f}", rate / raw["postgres"]])

    body = table(
        [
            "store",
            "workers",
            "auditq events/s",
            "raw bulk events/s",
            "ratio to raw (median)",
            "ratio range",
            "ratio to RQ",
            "ratio to original plan",
        ],
        rows,
    )
    body += (
        f"\n\nBaselines: raw bulk = {BATCH}-row COPY (postgres) or PostgREST bulk POST "
        f"(supabase) of the same rows; RQ one insert per job = {rq:,.1f} events/s "
        f"({args.rq_events} jobs, `rq worker --burst`); original plan (100 per 5 s) = "
        f"{plan:,.1f} events/s over {args.plan_seconds:.0f} s. PostgREST is reached "
        "through the test gateway (a Python proxy) in both the auditq and the raw runs."
    )
    body += "\n\nFixed batch sizes, 1 worker, postgres store:\n\n" + table(
        ["batch size", "events/s", "ratio to raw COPY"], sweep
    )
    body = body.replace(
        "\n\nBaselines:",
        f"\n\nMedian of {args.repeat} rounds, each a baseline run "
        "followed by the auditq runs it is compared with.\n\nBaselines:",
        1,
    )
    save("Drain throughput", f"python bench/drain.py --events {n} --repeat {args.repeat}", body)
    chart(sweep)


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
