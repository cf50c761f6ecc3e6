#!/usr/bin/env python
"""Drain rate with 20 content alert rules enabled vs none, and their evaluation cost.

    python bench/event_rules.py --events 100000

One worker (postgres store; it also runs the alert evaluator every second) drains a backlog
of --events queued events, first with no content rule, then with 20: 16 event rules and 4
rate rules (a quarter of them matching every event, the rest nothing; no channel, so only the
matching is measured, not sending). Target: the drain with 20 rules at least 0.9x the one
without. Then the evaluation cost per event: one run of the 20 rules over the drained rows
(the watermark set back to 0), timed in-process, divided by the rows.

Not a test: run by hand, and the
result is saved in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time

import psycopg
from common import save, services, table
from drain import drain_rate
from psycopg.types.json import Jsonb

from auditq.alerts.content import ContentRules
from auditq.alerts.repo import PostgresRepo
from auditq.alerts.rules import Rule, RuleState

NAME = "Drain with content alert rules"


def rule_rows(count: int) -> list[dict]:
    rows = []
    for i in range(count):
        matching = i % 4 == 0  # the bench events are all user.role_change
        action = "user.role_change" if matching else f"bench.never_{i}"
        row = {"name": f"bench {i}", "kind": "event", "match": {"action": action}}
        if i % 5 == 4:
            row |= {"kind": "event_rate", "group_by": "ip", "window_seconds": 300}
            row |= {"op": ">", "threshold": 1_000_000}
        rows.append(row)
    return rows


def set_rules(dsn: str, rows: list[dict]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("delete from public.alert_rules")
        for row in rows:
            conn.execute(
                "insert into public.alert_rules (name, kind, match, group_by, window_seconds,"
                " op, threshold) values (%s, %s, %s, %s, %s, %s, %s)",
                [
                    row["name"],
                    row["kind"],
                    Jsonb(row["match"]),
                    row.get("group_by"),
                    row.get("window_seconds"),
                    row.get("op"),
                    row.get("threshold"),
                ],
            )


def evaluation_seconds(dsn: str) -> float:
    """Content runs over every stored row (as if they all arrived since the last run), until
    the watermark stops moving: an upper bound (the rate rules count their window each run)."""
    repo = PostgresRepo(dsn, timeout=600)
    try:
        rules = [Rule.from_row(r | {"created_at": 0.0}) for r in repo.list("alert_rules")]
        content = ContentRules(repo)
        content.save_watermark("0")
        states = {r.id: RuleState() for r in rules}
        quiet = dict.fromkeys(states, False)
        started = time.perf_counter()
        mark = None
        while True:
            outcome = content.evaluate(rules, states, quiet, time.time())
            assert outcome.watermark is not None
            content.save_watermark(outcome.watermark)
            if outcome.watermark == mark:
                return time.perf_counter() - started
            mark = outcome.watermark
    finally:
        repo.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    n = args.events
    with services() as svc:
        runs = {}
        for count in (0, 20, 0, 20):  # interleaved, the best of two each
            set_rules(svc.dsn, rule_rows(count))
            run = drain_rate(svc, "postgres", n, 1, alert_interval=1)
            runs[count] = max(runs.get(count, 0.0), run.rate)
        seconds = evaluation_seconds(svc.dsn)
    ratio = runs[20] / runs[0]
    rows = [
        ["no content rules", f"{runs[0]:,.0f}", "1.00", "-"],
        ["20 content rules", f"{runs[20]:,.0f}", f"{ratio:.2f}", f"{seconds / n * 1e6:.1f}"],
    ]
    body = table(["run", "drain events/s (1 worker)", "vs none", "evaluation us/event"], rows)
    body += (
        f"\n\nTarget: >= 0.9x. Evaluation: one run of the 20 rules over {n:,} stored rows took"
        f" {seconds:.2f} s (matching in the database; an upper bound, see the script)."
    )
    save(NAME, f"python bench/event_rules.py --events {n}", body)


if __name__ == "__main__":
    main()
