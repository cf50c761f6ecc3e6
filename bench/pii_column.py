"""What the ``pii`` column costs Postgres per row, by its type: jsonb (as stored) or text.

    python bench/pii_column.py [--events 50000] [--repeat 15]

Encryption on costs the drain twice: the worker seals each row (bench/pii.py's step
timings), and Postgres takes a wider row. This measures the second part alone: the postgres
store's rows (bench/drain.py's events), plain and with their ip sealed into ``pii`` as the
worker seals it, COPYed as the store COPYs them (binary, COPY_BATCH-row statements, one
connection), into two scratch tables made like audit_logs (its columns, defaults, indexes
and checks): one as it is, with ``pii jsonb``, one with ``pii text``. Reported: the
backend's CPU per row (user + system), and the sealed rows' cost over the plain rows' in the
same table, paired within each round because this machine's speed drifts between rounds.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics

import psycopg
from common import cpu_seconds, save, services, table
from drain import COPY_BATCH, events

from auditq.config import Settings
from auditq.events import ROW_COLUMNS, Row, build_event, event_row
from auditq.pii.writer import sealer
from auditq.stores.copy import binary_copy
from auditq.stores.postgres import COPY_TYPES, PostgresStore

NAME = "The pii column's type"
PII = ROW_COLUMNS.index("pii")
TABLES = {  # name: the pii column's type in that scratch table
    "bench_pii_jsonb": "jsonb",
    "bench_pii_text": "text",
}


def make_tables(conn: psycopg.Connection) -> None:
    for name, kind in TABLES.items():
        conn.execute(f"drop table if exists {name}")
        conn.execute(f"create table {name} (like public.audit_logs including all)")
        if kind != "jsonb":
            # Its check (an object) reads the value as jsonb: the text column has none.
            for (check,) in conn.execute(
                "select conname from pg_constraint where conrelid = %s::regclass"
                " and contype = 'c' and pg_get_constraintdef(oid) like %s",
                (name, "%pii%"),
            ).fetchall():
                conn.execute(f"alter table {name} drop constraint {check}")
            conn.execute(f"alter table {name} alter column pii type {kind}")


def copy_cpu(conn: psycopg.Connection, name: str, rows: list[Row]) -> float:
    """The backend's CPU microseconds per row for COPYing the rows into the table."""
    types = list(COPY_TYPES)
    types[PII] = TABLES[name]
    conn.execute(f"truncate {name}")
    conn.commit()
    backend = cpu_seconds(conn.info.backend_pid)
    for start in range(0, len(rows), COPY_BATCH):
        with conn.cursor() as cur, binary_copy(cur, name, ROW_COLUMNS, types) as copy:
            for row in rows[start : start + COPY_BATCH]:
                copy.write_row(row)
        conn.commit()
    return (cpu_seconds(conn.info.backend_pid) - backend) * 1e6 / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    built = [build_event(e) for e in events(args.events)]
    plain = [event_row(event, "queue") for event in built]
    cases = [(name, sealed) for name in TABLES for sealed in (False, True)]
    cpu: dict[tuple[str, bool], list[float]] = {case: [] for case in cases}
    with services() as svc:
        key = base64.b64encode(os.urandom(32)).decode()
        settings = Settings(store="postgres", database_url=svc.dsn, pii_key=key)
        store = PostgresStore(svc.dsn)
        sealed_rows = list(sealer(settings, store)([event_row(e, "queue") for e in built]))
        store.close()
        assert all(row[PII] is not None for row in sealed_rows)
        with psycopg.connect(svc.dsn) as conn:
            make_tables(conn)
            conn.commit()
            for round_no in range(args.repeat):
                # Alternating order, so that a drift in the machine's speed hits each alike.
                for case in cases if round_no % 2 == 0 else cases[::-1]:
                    name, sealed = case
                    cpu[case].append(copy_cpu(conn, name, sealed_rows if sealed else plain))
                done = [
                    f"{t} {'sealed' if s else 'plain'} {us[-1]:.1f}" for (t, s), us in cpu.items()
                ]
                print(f"round {round_no}: {', '.join(done)}", flush=True)
    rows: list[list[object]] = []
    for name, kind in TABLES.items():
        plain_us, sealed_us = cpu[(name, False)], cpu[(name, True)]
        extra = [s - p for p, s in zip(plain_us, sealed_us, strict=True)]
        ratio = [s / p for p, s in zip(plain_us, sealed_us, strict=True)]
        rows.append(
            [
                kind,
                f"{statistics.median(plain_us):.1f}",
                f"{statistics.median(sealed_us):.1f}",
                f"{statistics.median(extra):+.1f} ({min(extra):+.1f} to {max(extra):+.1f})",
                f"{statistics.median(ratio):.2f}",
            ]
        )
    body = table(
        ["pii column", "plain rows, us/row", "sealed rows, us/row",
         "sealed - plain, us/row (paired; range)", "sealed / plain (paired)"],
        rows,
    )  # fmt: skip
    body += (
        f"\n\nPostgres backend CPU per row (median of {args.repeat} interleaved rounds), "
        f"{args.events:,} rows of bench/drain.py's events in {COPY_BATCH:,}-row binary "
        "COPYs, into scratch tables made like audit_logs (not partitioned). Sealed rows: "
        "the ip encrypted into pii (its JSON text, about 130 bytes), the ip column null."
    )
    save(NAME, f"python bench/pii_column.py --events {args.events} --repeat {args.repeat}", body)


if __name__ == "__main__":
    main()
