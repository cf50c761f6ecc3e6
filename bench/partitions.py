#!/usr/bin/env python
"""Monthly partitions: insert rate into the partitioned table vs the unpartitioned one, and
the explorer's latency over many rows spread over 12 months, with and without a time filter.

    python bench/partitions.py --inserts 200000 --rows 10000000

Inserts go through the postgres store (COPY, batches of 1,000, the worker's path) into a
database migrated with the partitions and into one migrated up to just before them. The
explorer rows are generated in SQL (12 months, even spread), then ANALYZEd; each query is the
explorer's own (PostgresStore.query_events: newest first, 50 rows).
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from common import save, summary, table

from auditq.devtools.embedded import PostgresServer, create_supabase_roles
from auditq.events import build_event
from auditq.migrate import MIGRATIONS_DIR, apply_migrations
from auditq.stores import EventFilters
from auditq.stores.postgres import PostgresStore

NAME = "Partitions: insert rate and explorer latency"
PARTITIONS = "20261129000400"
START = datetime(2025, 1, 1, tzinfo=UTC)
BATCH = 1000
QUERIES = 30


def migrate_before_partitions(dsn: str, work: Path) -> None:
    before = work / "before"
    before.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name.split("_", 1)[0] < PARTITIONS:
            shutil.copy(path, before / path.name)
    apply_migrations(dsn, before)


def insert_rate(dsn: str, n: int) -> float:
    rng = random.Random(7)
    events = [
        build_event(
            {
                "action": f"doc.{rng.choice(['read', 'edit', 'share'])}",
                "actor_id": f"u_{rng.randrange(5000)}",
                "occurred_at": (START + timedelta(seconds=rng.randrange(365 * 86400))).isoformat(),
                "metadata": {"i": i},
            }
        )
        for i in range(n)
    ]
    store = PostgresStore(dsn, timeout=300)
    started = time.perf_counter()
    for i in range(0, n, BATCH):
        store.insert_events(events[i : i + BATCH])
    seconds = time.perf_counter() - started
    store.close()
    return n / seconds


def fill(dsn: str, rows: int) -> float:
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "insert into public.audit_logs (id, occurred_at, action, actor_id, metadata)"
            " select gen_random_uuid(),"
            "        %s::timestamptz + (g::double precision / %s) * interval '365 days',"
            "        'doc.' || (array['read', 'edit', 'share'])[1 + g %% 3],"
            "        'u_' || (g %% 5000), jsonb_build_object('i', g)"
            " from generate_series(0, %s - 1) g",
            (START, rows, rows),
        )
        conn.execute("analyze public.audit_logs")
    return time.perf_counter() - started


def latency(store: PostgresStore, filters: EventFilters) -> dict[str, float]:
    store.query_events(filters, None, 50)  # warm
    samples = []
    for _ in range(QUERIES):
        started = time.perf_counter()
        assert store.query_events(filters, None, 50)
        samples.append((time.perf_counter() - started) * 1000)
    return summary(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inserts", type=int, default=200_000)
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="auditq-bench-") as tmp:
        work = Path(tmp)
        with PostgresServer(work / "pg", fast=True) as pg:
            create_supabase_roles(pg.dsn)
            with psycopg.connect(pg.dsn, autocommit=True) as conn:
                conn.execute("create database flat")
                conn.execute("create database parted")
            flat, parted = (
                pg.dsn_for("postgres", database="flat"),
                pg.dsn_for("postgres", database="parted"),
            )
            migrate_before_partitions(flat, work)
            apply_migrations(parted)
            rates = {name: insert_rate(dsn, args.inserts) for name, dsn in
                     (("unpartitioned", flat), ("partitioned", parted))}  # fmt: skip
            filled = fill(parted, args.rows)
            store = PostgresStore(parted, timeout=300)
            month = START + timedelta(days=180)
            cases = {
                "no filter (newest 50)": EventFilters(),
                "time filter: one week": EventFilters(since=month, until=month + timedelta(7)),
                "time filter: one month + action": EventFilters(
                    since=month, until=month + timedelta(30), action="doc.edit"
                ),
                "actor, no time filter": EventFilters(actor_id="u_42"),
                "actor + time filter: one month": EventFilters(
                    actor_id="u_42", since=month, until=month + timedelta(30)
                ),
            }
            results = {name: latency(store, filters) for name, filters in cases.items()}
            store.close()
    ratio = rates["partitioned"] / rates["unpartitioned"]
    body = (
        f"Insert: {args.inserts:,} events through the postgres store (COPY, batches of"
        f" {BATCH:,}), occurred_at spread over 12 months.\n\n"
        + table(
            ["table", "rows/s", "x unpartitioned"],
            [
                [name, f"{rate:,.0f}", f"{rate / rates['unpartitioned']:.2f}"]
                for name, rate in rates.items()
            ],
        )  # fmt: skip
        + f"\n\nExplorer: {args.rows:,} rows over 12 monthly partitions (generated in SQL in"
        f" {filled:,.0f} s, then ANALYZE); the explorer's query, 50 rows, {QUERIES} runs each,"
        " ms.\n\n"
        + table(
            ["query", "p50", "p95", "mean"],
            [[name, s["p50"], s["p95"], s["mean"]] for name, s in results.items()],
        )
        + f"\n\nPartitioned insert rate: {ratio:.2f}x the unpartitioned one."
    )
    save(NAME, f"python bench/partitions.py --inserts {args.inserts} --rows {args.rows}", body)
    print(body)


if __name__ == "__main__":
    main()
