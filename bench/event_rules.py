#!/usr/bin/env python
"""Drain rate with 20 content alert rules enabled vs none, and their evaluation cost.

    python bench/event_rules.py --events 100000

One worker (postgres store; it also runs the alert evaluator, every --alert-interval s)
drains a backlog of --events queued events, first with no content rule, then with 20: 16
event rules and 4 rate rules (a quarter of them matching every event, the rest nothing; no
channel, so only the matching is measured, not sending). Target: the drain with 20 rules at
least 0.9x the one without. Then the evaluation cost per event: the 20 rules run over the
drained rows (the watermark set back to 0) until caught up, timed in-process, divided by the
rows. Last, the latency from logging a matching event to its webhook arriving, with one
worker (default alert interval) draining a steady --rate events/s.

Not a test: run by hand; the result is saved in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import redis
from common import ROOT, percentile, save, services, table
from drain import drain_rate, events, truncate, worker_env
from psycopg.types.json import Jsonb

from auditq.alerts.content import ContentRules
from auditq.alerts.repo import PostgresRepo
from auditq.alerts.rules import Rule, RuleState
from auditq.alerts.service import AlertService
from auditq.client import AuditClient
from auditq.config import load_settings

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
    one reads less than a batch: an upper bound (the rate rules count their window each run)."""
    repo = PostgresRepo(dsn, timeout=600)
    try:
        rules = [Rule.from_row(r | {"created_at": 0.0}) for r in repo.list("alert_rules")]
        content = ContentRules(repo)
        content.save_watermark({"txid": "0", "after": None})
        states = {r.id: RuleState() for r in rules}
        quiet = dict.fromkeys(states, False)
        started = time.perf_counter()
        while True:
            outcome = content.evaluate(rules, states, quiet, time.time())
            assert outcome.watermark is not None
            content.save_watermark(outcome.watermark)
            if outcome.watermark["after"] is None:  # caught up with the horizon
                return time.perf_counter() - started
    finally:
        repo.close()


def notification_latency(svc, rate: int, seconds: float) -> list[float]:
    """Seconds from log() of each matching event to its webhook at a local receiver."""
    arrived: dict[str, float] = {}

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            for alert in body["alerts"]:
                arrived.setdefault(alert["labels"]["event_id"], time.time())
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    set_rules(svc.dsn, [])
    settings = load_settings(
        redis_url=svc.redis.url, store="postgres", database_url=svc.dsn, alert_allow_private=True
    )
    repo = PostgresRepo(svc.dsn)
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    svc_alerts = AlertService(repo, None, settings)
    config = {"url": url}
    channel = svc_alerts.create_channel({"name": "bench", "kind": "webhook", "config": config})
    svc_alerts.create_rule(
        {"name": "bench grant", "kind": "event", "match": {"action": "role.grant"},
         "channel_ids": [channel["id"]]}
    )  # fmt: skip
    truncate(svc.dsn)
    redis.Redis.from_url(svc.redis.url).flushdb()
    env = worker_env(svc, "postgres", alert_allow_private="true")
    worker = subprocess.Popen([sys.executable, "-m", "worker"], env=env, cwd=ROOT)
    producer = AuditClient(load_settings(redis_url=svc.redis.url, max_queue=10_000_000))
    logged: dict[str, float] = {}
    try:
        time.sleep(3)  # the worker up, its evaluator leading
        load = events(rate // 10)
        end = time.time() + seconds
        while time.time() < end:
            tick = time.time()
            producer.log_many(load)
            result = producer.log("role.grant", actor_id="u_bench", metadata={"role": "admin"})
            logged[str(result.id)] = time.time()
            time.sleep(max(0.0, 0.1 - (time.time() - tick)))
        deadline = time.time() + 60
        while len(arrived) < len(logged) and time.time() < deadline:
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait(30)
        server.shutdown()
        repo.close()
    assert len(arrived) == len(logged), f"{len(arrived)} of {len(logged)} notified"
    return sorted(arrived[i] - logged[i] for i in logged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--alert-interval", type=float, default=5.0)  # AUDITQ_ALERT_INTERVAL
    args = parser.parse_args()
    n = args.events
    with services() as svc:
        runs = {}
        for count in (0, 20, 0, 20):  # interleaved, the best of two each
            set_rules(svc.dsn, rule_rows(count))
            run = drain_rate(svc, "postgres", n, 1, alert_interval=args.alert_interval)
            runs[count] = max(runs.get(count, 0.0), run.rate)
        seconds = evaluation_seconds(svc.dsn)
        latency = notification_latency(svc, args.rate, args.seconds)
    ratio = runs[20] / runs[0]
    rows = [
        ["no content rules", f"{runs[0]:,.0f}", "1.00", "-"],
        ["20 content rules", f"{runs[20]:,.0f}", f"{ratio:.2f}", f"{seconds / n * 1e6:.1f}"],
    ]
    headers = ["run", f"drain events/s (1 worker, alerts every {args.alert_interval:g} s)"]
    body = table([*headers, "vs none", "evaluation us/event"], rows)
    body += (
        f"\n\nTarget: >= 0.9x. Evaluation: one run of the 20 rules over {n:,} stored rows took"
        f" {seconds:.2f} s (matching in the database; an upper bound, see the script)."
        f"\n\nLatency, log() to webhook received, one matching event every 0.1 s within"
        f" {args.rate:,} events/s for {args.seconds:.0f} s ({len(latency)} events; one worker,"
        f" AUDITQ_ALERT_INTERVAL=5): p50 {percentile(latency, 0.5):.2f} s,"
        f" p95 {percentile(latency, 0.95):.2f} s, max {latency[-1]:.2f} s. Target: <= 10 s."
    )
    command = f"python bench/event_rules.py --events {n} --rate {args.rate}"
    command += f" --seconds {args.seconds:g} --alert-interval {args.alert_interval:g}"
    save(NAME, command, body)


if __name__ == "__main__":
    main()
