#!/usr/bin/env python
"""Drain rate with personal fields encrypted (AUDITQ_PII_KEY) against without, same run.

    python bench/pii.py --events 50000 --rounds 3

One worker drains EVENTS queued events (bench/drain.py's events: 5,000 distinct actors, and
an ip to encrypt in every row) into Postgres, ROUNDS times each way, interleaved:
- off: no AUDITQ_PII_KEY;
- on, new keys: the data keys dropped first, so the run creates 5,000 of them (a backlog
  of actors never seen before: the worst case);
- on, keys exist: the actors have keys already (the steady state), the worker's cache
  starts empty (a new process).
Target: encryption on >= 0.8x the rate with it off.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics

import psycopg
from common import save, services, table
from drain import drain_rate

NAME = "Drain with personal fields encrypted"
TARGET = 0.8
MODES = ("off", "on, new keys", "on, keys exist")


def drop_keys(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("truncate public.audit_pii_keys")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    key = base64.b64encode(os.urandom(32)).decode()
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    with services() as svc:
        for _ in range(args.rounds):
            for mode in MODES:
                if mode != "on, keys exist":
                    drop_keys(svc.dsn)
                knobs = {"pii_key": key} if mode != "off" else {}
                run = drain_rate(svc, "postgres", args.events, 1, **knobs)
                rates[mode].append(run.rate)
                cpu[mode].append(run.client_us)
                print(f"{mode}: {run.rate:,.0f} events/s, worker {run.client_us:.1f} us/event")
    off = statistics.median(rates["off"])
    rows = [
        [mode, f"{statistics.median(rates[mode]):,.0f}",
         ", ".join(f"{r:,.0f}" for r in rates[mode]), f"{statistics.median(cpu[mode]):.1f}"]
        for mode in MODES
    ]  # fmt: skip
    ratios = []
    for mode in MODES[1:]:
        ratio = statistics.median(rates[mode]) / off
        verdict = "met" if ratio >= TARGET else "NOT met"
        ratios.append(f"{mode}: **{ratio:.2f}x** ({verdict})")
    body = (
        table(["encryption", "median events/s", "runs", "worker CPU us/event"], rows)
        + f"\n\nRatio to off (target >= {TARGET}x): "
        + "; ".join(ratios)
        + f". One worker, postgres store, {args.events:,} events, 5,000 actors, ip encrypted."
    )
    save(NAME, f"python bench/pii.py --events {args.events} --rounds {args.rounds}", body)


if __name__ == "__main__":
    main()
