#!/usr/bin/env python
"""Sealing and verify rates (rows/s) beside the one-worker drain rate of the same run.

    python bench/seal.py --rows 100000

One worker drains ROWS events into Postgres (bench/drain.py's helpers); then the rows are
sealed in one pass and verified, through the postgres store (psycopg) and the supabase
store (supabase-py through PostgREST). Target: sealing at least 3x the drain rate, so the
sealer never becomes the bottleneck.
"""

from __future__ import annotations

import argparse
import time

import psycopg
from common import save, services, table
from drain import drain_rate

from auditq.config import Settings
from auditq.seals import signing
from auditq.seals.sealer import seal_pass
from auditq.seals.verify import verify
from auditq.stores.postgres import PostgresStore
from auditq.stores.supabase import SupabaseStore

NAME = "Seal and verify rates"
HEADERS = ["what", "seals", "rows/s", "x drain", "client CPU us/row", "store CPU us/row"]


def drop_seals(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("set session_replication_role = replica")
        conn.execute("truncate public.audit_seals")


def analyze(dsn: str) -> None:
    # A table that just went from empty to ROWS has no planner statistics until autovacuum
    # gets to it; a production table has them. Without, the keyset reads may plan a scan.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("analyze public.audit_logs")


def timed(run) -> tuple[float, float, object]:
    """Wall seconds, this process's CPU seconds, and the result of ``run()``."""
    started, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - started, time.process_time() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    n = args.rows
    pair = signing.generate()
    signer = signing.signer(Settings(seal_key=pair.private))
    checker = signing.checker(Settings(seal_public_key=pair.public))
    rows: list[list[object]] = []
    with services() as svc:
        # One worker's drain through each store: each seal/verify rate is compared with the
        # drain through the same path (PostgREST behind nginx, bench/common.py, in both).
        drain = {name: drain_rate(svc, name, n, 1) for name in ("supabase", "postgres")}
        analyze(svc.dsn)
        for name, run in drain.items():
            rows.append(
                [f"drain, 1 worker ({name} store)", "-", f"{run.rate:,.0f}", "1.00",
                 f"{run.client_us:.1f}", f"{run.store_us:.1f}"]
            )  # fmt: skip
        stores = {
            "postgres": PostgresStore(svc.dsn, timeout=300),
            "supabase": SupabaseStore(svc.supabase.url, svc.supabase.service_key, timeout=300),
        }
        # The first pass is the rows' first reader since the drain (it also pays for
        # setting their hint bits, as a sealer running behind the workers does); the
        # others read rows already read once.
        ratios = {}
        for i, (name, store) in enumerate([*stores.items(), ("postgres", stores["postgres"])]):
            label = f"{name} store" + (", first reader" if i == 0 else "")
            drop_seals(svc.dsn)
            seconds, cpu, result = timed(lambda s=store: seal_pass(s, signer, 0, budget=3600))
            assert result.rows == n, result
            rate = n / seconds
            ratios[name] = rate / drain[name].rate
            rows.append(
                [f"seal ({label})", result.seals, f"{rate:,.0f}", f"{ratios[name]:.2f}",
                 f"{cpu / n * 1e6:.1f}", "-"]
            )  # fmt: skip
            seconds, cpu, report = timed(lambda s=store: verify(s, checker))
            assert report.ok and report.rows == n, report.findings[:5]
            rate = n / seconds
            rows.append(
                [f"verify ({label})", report.seals, f"{rate:,.0f}",
                 f"{rate / drain[name].rate:.2f}", f"{cpu / n * 1e6:.1f}", "-"]
            )  # fmt: skip
        for store in stores.values():
            store.close()
    verdict = "met" if min(ratios.values()) >= 3 else "NOT met"
    body = (
        f"{n:,} rows drained by one worker, then (after ANALYZE) one seal pass over all of"
        " them and one verify, through each store. The sealer has the database hash the rows"
        " (audit_seal_next, one call per seal) and reads 48 bytes a row; verify reads whole"
        " rows and hashes them in Python. `x drain`: against the drain through the same"
        " store (PostgREST behind nginx). CPU per row: the worker's (drain) or this process's"
        " (seal, verify), and the store's (Postgres, plus PostgREST for the supabase store)"
        " during the drain.\n\n"
        + table(HEADERS, rows)
        + f"\n\nTarget: sealing >= 3x the one-worker drain rate: **{ratios['postgres']:.1f}x**"
        f" through the postgres store, **{ratios['supabase']:.1f}x** through PostgREST: {verdict}."
    )
    save(NAME, f"python bench/seal.py --rows {n}", body)


if __name__ == "__main__":
    main()
