"""What the ``pii`` column costs Postgres per row, by the shape of its JSON and its type.

    python bench/pii_column.py [--events 50000] [--repeat 15]

Encryption on costs the drain twice: the worker seals each row (bench/pii.py's step
timings), and Postgres takes a wider row. This measures the second part alone. The postgres
store's rows (bench/drain.py's events) are COPYed as the store COPYs them (binary,
COPY_BATCH-row statements, one connection):
- plain;
- with their ip sealed into ``pii`` as the writer seals it now (format 2: a one-key object);
- with the same ciphertext in format 1, the four-key object written before (auditq/pii).
They go into two scratch tables made like audit_logs (its columns, defaults, indexes and
checks): one as it is, with ``pii jsonb``, one with ``pii text``. Reported: the backend's
CPU per row (user + system), and each sealed shape's cost over the plain rows' in the same
table, paired within each round because this machine's speed drifts between rounds.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import time

import psycopg
from common import cpu_seconds, save, services, table
from drain import COPY_BATCH, events

from auditq.config import Settings
from auditq.events import ROW_COLUMNS, Row, build_event, event_row
from auditq.pii.writer import sealer
from auditq.stores.copy import binary_copy
from auditq.stores.postgres import COPY_TYPES, PostgresStore
from tests.auditq.pii.helpers import in_first_format

NAME = "The pii column's type"
SHAPES = ("plain", "sealed, format 2", "sealed, format 1")
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


def cast_us(conn: psycopg.Connection, text: str, count: int = 300_000) -> float:
    """Microseconds Postgres takes to read one pii value as jsonb, the cast alone: the same
    text in ``count`` rows of a temp table, cast in one statement (less noisy than a COPY,
    whose other work varies more than the difference in the cast)."""
    conn.execute("truncate bench_pii_values")
    conn.execute(
        "insert into bench_pii_values select %s from generate_series(1, %s)", (text, count)
    )
    started = time.perf_counter()
    conn.execute("select count(value::jsonb) from bench_pii_values").fetchone()
    return (time.perf_counter() - started) * 1e6 / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    built = [build_event(e) for e in events(args.events)]
    shapes: dict[str, list[Row]] = {SHAPES[0]: [event_row(event, "queue") for event in built]}
    cases = [(name, shape) for name in TABLES for shape in SHAPES]
    cpu: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
    cast: dict[str, list[float]] = {shape: [] for shape in SHAPES[1:]}
    with services() as svc:
        key = base64.b64encode(os.urandom(32)).decode()
        settings = Settings(store="postgres", database_url=svc.dsn, pii_key=key)
        store = PostgresStore(svc.dsn)
        sealed = list(sealer(settings, store)([event_row(e, "queue") for e in built]))
        store.close()
        assert all(row[PII] is not None for row in sealed)
        shapes[SHAPES[1]] = sealed
        shapes[SHAPES[2]] = [[*r[:PII], in_first_format(r[PII]), *r[PII + 1 :]] for r in sealed]
        with psycopg.connect(svc.dsn) as conn:
            make_tables(conn)
            conn.commit()
            for round_no in range(args.repeat):
                # Alternating order, so that a drift in the machine's speed hits each alike.
                for case in cases if round_no % 2 == 0 else cases[::-1]:
                    name, shape = case
                    cpu[case].append(copy_cpu(conn, name, shapes[shape]))
                done = [f"{t} {shape} {us[-1]:.1f}" for (t, shape), us in cpu.items()]
                print(f"round {round_no}: {', '.join(done)}", flush=True)
            conn.execute("create temp table bench_pii_values (value text)")
            for round_no in range(args.repeat):
                for shape in SHAPES[:0:-1] if round_no % 2 else SHAPES[1:]:
                    cast[shape].append(cast_us(conn, shapes[shape][0][PII]))
    rows: list[list[object]] = []
    for name, kind in TABLES.items():
        plain = cpu[(name, SHAPES[0])]
        rows.append([kind, SHAPES[0], f"{statistics.median(plain):.1f}", "", ""])
        for shape in SHAPES[1:]:
            us = cpu[(name, shape)]
            extra = [s - p for p, s in zip(plain, us, strict=True)]
            ratio = [s / p for p, s in zip(plain, us, strict=True)]
            rows.append(
                [
                    kind,
                    shape,
                    f"{statistics.median(us):.1f}",
                    f"{statistics.median(extra):+.1f} ({min(extra):+.1f} to {max(extra):+.1f})",
                    f"{statistics.median(ratio):.2f}",
                ]
            )
    body = table(
        ["pii column", "rows", "us/row", "over plain rows, us/row (paired; range)",
         "x plain rows (paired)"],
        rows,
    )  # fmt: skip
    body += (
        f"\n\nPostgres backend CPU per row (median of {args.repeat} interleaved rounds), "
        f"{args.events:,} rows of bench/drain.py's events in {COPY_BATCH:,}-row binary "
        "COPYs, into scratch tables made like audit_logs (not partitioned). Sealed rows: "
        "the ip encrypted into pii, the ip column null; format 2's JSON is about 115 bytes, "
        "format 1's about 130."
    )
    body += "\n\n" + table(
        ["pii's JSON", "cast to jsonb, us (median)", "runs"],
        [[shape, f"{statistics.median(us):.2f}", ", ".join(f"{x:.2f}" for x in us)]
         for shape, us in cast.items()],
    )  # fmt: skip
    body += (
        "\n\nThe cast alone: one sealed row's pii text, 300,000 times in a temp table, read "
        "as jsonb in one statement (`select count(value::jsonb)`), the two shapes alternating."
    )
    save(NAME, f"python bench/pii_column.py --events {args.events} --repeat {args.repeat}", body)


if __name__ == "__main__":
    main()
