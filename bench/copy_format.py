"""COPY's text format against its binary format (auditq/stores/copy.py), the same rows.

    python bench/copy_format.py [--events 100000] [--repeat 4]

The postgres store's rows (ROW_COLUMNS, as its COPY sends them: metadata as orjson's text)
COPYed in COPY_BATCH-row statements, one client, in interleaved rounds: text format with
each column's type declared (how the store sent them before), and binary format. Per event:
the client's CPU (this process) and the store's (Postgres, its backends included), and the
rate. The table is emptied before each run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg
from common import cpu_seconds, save, services, table
from drain import COPY_BATCH, events, truncate

from auditq.events import COLUMN, ROW_COLUMNS, build_event, event_row
from auditq.stores.copy import binary_copy
from auditq.stores.encoding import dumps
from auditq.stores.postgres import COPY_TYPES

METADATA = COLUMN["metadata"]
TEXT_TYPES = [{"uuid": "uuid", "timestamptz": "timestamptz"}.get(t, "text") for t in COPY_TYPES]


def rows(n: int) -> list[list]:
    """The store's rows, metadata as orjson's text: what both formats can take."""
    out = [event_row(event, "queue") for event in map(build_event, events(n))]
    for row in out:
        row[METADATA] = dumps(row[METADATA]).decode()
    return out


def text_copy(cur: psycopg.Cursor, batch: list[list]) -> None:
    with cur.copy(f"copy public.audit_logs ({', '.join(ROW_COLUMNS)}) from stdin") as copy:
        copy.set_types(TEXT_TYPES)
        for row in batch:
            copy.write_row(row)


def binary(cur: psycopg.Cursor, batch: list[list]) -> None:
    with binary_copy(cur, "public.audit_logs", ROW_COLUMNS, COPY_TYPES) as copy:
        for row in batch:
            copy.write_row(row)


def run(dsn: str, server_pid: int, data: list[list], copy_batch) -> tuple[float, float, float]:
    """events/s, client us/event, store us/event"""
    truncate(dsn)
    n = len(data)
    with psycopg.connect(dsn) as conn:
        store, cpu, started = cpu_seconds(server_pid), time.process_time(), time.perf_counter()
        for start in range(0, n, COPY_BATCH):
            with conn.cursor() as cur:
                copy_batch(cur, data[start : start + COPY_BATCH])
            conn.commit()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    time.sleep(0.5)  # the backend's CPU counts once the postmaster has reaped it
    store = cpu_seconds(server_pid) - store
    return n / elapsed, cpu * 1e6 / n, store * 1e6 / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args()
    data = rows(args.events)
    results: dict[str, list[tuple[float, float, float]]] = {"text": [], "binary": []}
    with services() as svc:
        for _ in range(args.repeat):
            for name, copy_batch in (("text", text_copy), ("binary", binary)):
                results[name].append(run(svc.dsn, svc.postgres.pid, data, copy_batch))
                print(name, results[name][-1], flush=True)
    medians = {
        name: [statistics.median(col) for col in zip(*r, strict=True)]
        for name, r in results.items()
    }
    text, fast = medians["text"], medians["binary"]
    lines = [[name, f"{m[0]:,.0f}", f"{m[1]:.2f}", f"{m[2]:.2f}"] for name, m in medians.items()]
    lines.append(
        [
            "binary / text",
            f"{fast[0] / text[0]:.2f}",
            *(f"{f / t:.2f}" for f, t in zip(fast[1:], text[1:], strict=True)),
        ]
    )
    body = table(["COPY format", "events/s", "client us/event", "Postgres us/event"], lines)
    body += (
        f"\n\nMedians of {args.repeat} interleaved rounds of {args.events:,} rows"
        f" ({COPY_BATCH:,} a statement). Client: this process's CPU; Postgres: the server's."
    )
    save(
        "Binary COPY",
        f"python bench/copy_format.py --events {args.events} --repeat {args.repeat}",
        body,
    )


if __name__ == "__main__":
    main()
