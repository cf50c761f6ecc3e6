"""auditq.devtools.demo: realistic traffic through the real client, and malformed entries the worker
must dead-letter."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import redis

from auditq.client import AuditClient
from auditq.config import load_settings
from auditq.decoding import decode_entry
from auditq.devtools.demo import MALFORMED, DemoTraffic, run
from auditq.events import EventError, build_event
from auditq.keys import Keys

REPO = Path(__file__).resolve().parents[3]


def test_every_generated_event_is_valid_and_the_mix_is_realistic() -> None:
    traffic = DemoTraffic(random.Random(7))
    events = traffic.showcase() + traffic.events(5_000)
    for event in events:
        build_event(event)  # raises on anything invalid
    actions = {e["action"] for e in events}
    assert {
        "user.login",
        "user.logout",
        "user.role_change",
        "user.ban",
        "user.lock",
        "api_key.create",
    } <= actions
    failures = [e for e in events if e["action"] == "user.login" and e["outcome"] == "failure"]
    logins = [e for e in events if e["action"] == "user.login"]
    critical = [e for e in events if e.get("category") == "critical"]
    assert 0.1 < len(failures) / len(logins) < 0.4
    assert 0 < len(critical) < 0.05 * len(events)


def test_showcase_has_one_of_every_kind_and_a_brute_force_burst() -> None:
    showcase = DemoTraffic(random.Random(1)).showcase()
    lock = showcase[-1]
    assert lock["action"] == "user.lock" and lock["category"] == "critical"
    burst = [e for e in showcase if e.get("ip") == lock["ip"] and e["outcome"] == "failure"]
    assert len(burst) >= 5 and {e["actor_id"] for e in burst} == {lock["target_id"]}


@pytest.mark.parametrize("fields", MALFORMED)
def test_each_malformed_entry_is_rejected_by_the_workers_decoder(fields: dict[str, str]) -> None:
    with pytest.raises(EventError):
        decode_entry("1700000000000-0", {k.encode(): v.encode() for k, v in fields.items()}, 65536)


def test_run_sends_through_the_client_and_the_store(redis_url: str, clean_db: str) -> None:
    settings = load_settings(redis_url=redis_url, database_url=clean_db)
    client = AuditClient(settings)
    try:
        totals = run(client, rate=400, duration=1.0, seed=3, malformed_every=0.3)
    finally:
        client.close()

    keys = Keys(settings.prefix)
    r = redis.Redis.from_url(redis_url)
    entries = r.xrange(keys.stream)
    decodable, broken = [], 0
    for entry_id, fields in entries:
        try:
            decodable.append(decode_entry(entry_id.decode(), fields, 65536))
        except EventError:
            broken += 1
    assert broken == totals["malformed"] >= 3  # one at the start, then every 0.3 s
    assert len(decodable) == totals["queued"] >= 300
    assert all(event.category == "normal" for event in decodable)

    with psycopg.connect(clean_db) as conn:
        rows = conn.execute(
            "select action, ingest_path from audit_logs where category = 'critical'"
        ).fetchall()
    assert len(rows) == totals["written"] > 0  # critical events went straight to the store
    assert {path for _, path in rows} == {"direct"}
    assert {"user.ban", "user.lock"} <= {action for action, _ in rows}
    assert totals["sent"] == totals["queued"] + totals["written"]


def test_the_command_runs_alone_against_the_environment(redis_url: str, clean_db: str) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.upper().startswith(("AUDITQ_", "SUPABASE_"))
    }
    env.update(REDIS_URL=redis_url, DATABASE_URL=clean_db, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "auditq", "demo", "--rate", "100", "--duration", "1", "--seed", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "demo: done" in result.stderr
    stream = redis.Redis.from_url(redis_url).xrange(Keys().stream, count=1)
    assert json.loads(stream[0][1][b"event"])["action"]


def test_the_command_says_when_redis_is_unreachable() -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.upper().startswith(("AUDITQ_", "SUPABASE_"))
    }
    env.update(REDIS_URL="redis://127.0.0.1:1/0", PYTHONPATH=str(REPO))
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "auditq", "demo", "--duration", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "cannot reach Redis" in result.stderr
