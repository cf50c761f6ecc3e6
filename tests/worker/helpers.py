"""Worker test helpers: real `python -m worker` processes, events on the real stream, polling.

Every wait polls with a generous deadline and fails with the workers' log tails, so a slow
(loaded, 2-core) machine makes a test slower, never red.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
import redis

from auditq.config import env_name
from auditq.decoding import derived_id
from auditq.heartbeat import list_workers
from auditq.keys import GROUP, Keys
from auditq.queue import Queue, connect
from auditq.stats import Stats
from tests.polling import wait_for
from tests.services import LocalSupabase
from worker.batching import AdaptiveBatch
from worker.heartbeat import WorkerStatus
from worker.insert import BatchInserter

REPO = Path(__file__).resolve().parents[2]
PREFIX = "audit"
KEYS = Keys(PREFIX)

# Short intervals so the tests see behaviour within seconds; each test overrides what it probes.
FAST_KNOBS: dict[str, Any] = {
    "prefix": PREFIX,
    "drain_interval": 0.1,
    "heartbeat_interval": 0.2,
    "heartbeat_ttl": 5,
    "retry_base": 0.2,
    "retry_max": 1.0,
    "shutdown_grace": 20,
    "log_level": "DEBUG",
}


class Workers:
    """Starts worker processes; the fixture kills whatever is still running at the end."""

    def __init__(self, tmp_path: Path, redis_url: str, pg_dsn: str) -> None:
        self.tmp_path = tmp_path
        self.redis_url = redis_url
        self.pg_dsn = pg_dsn
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, supabase: LocalSupabase | None = None, **knobs: Any) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not _configures_auditq(k)}
        settings = {**FAST_KNOBS, **knobs, "redis_url": self.redis_url}
        if supabase is None:
            settings |= {"store": "postgres", "database_url": self.pg_dsn}
        else:
            settings |= {
                "store": "supabase",
                "supabase_url": supabase.url,
                "supabase_service_role_key": supabase.service_key,
            }
        env.update({env_name(field): str(value) for field, value in settings.items()})
        log = (self.tmp_path / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker"],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        self.procs.append(proc)
        return proc

    def logs(self, lines: int = 25) -> str:
        tails = []
        for i, proc in enumerate(self.procs):
            text = (self.tmp_path / f"worker-{i}.log").read_text(errors="replace")
            tail = "\n".join(text.splitlines()[-lines:])
            tails.append(f"--- worker {i} (pid {proc.pid}, exit {proc.poll()}) ---\n{tail}")
        return "\n".join(tails)

    def wait_exit(self, proc: subprocess.Popen, timeout: float) -> int:
        wait_for(lambda: proc.poll() is not None, f"worker {proc.pid} to exit", timeout, self.logs)
        return proc.returncode


def _configures_auditq(name: str) -> bool:
    upper = name.upper()
    return upper.startswith("AUDITQ_") or upper in (
        "REDIS_URL", "DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY",
    )  # fmt: skip


# --- events ------------------------------------------------------------------------------


def make_events(n: int, start: int = 0) -> list[str]:
    """n valid events as producers send them; every other one without an id (the worker
    then derives one from the entry id, which is what makes redelivery safe)."""
    payloads = []
    for i in range(start, start + n):
        event: dict[str, Any] = {
            "action": "user.login",
            "actor_id": f"u_{i}",
            "target_type": "session",
            "ip": "203.0.113.7",
            "metadata": {"n": i},
        }
        if i % 2:
            event["id"] = str(uuid.uuid4())
        payloads.append(json.dumps(event))
    return payloads


def enqueue(queue: Queue, payloads: list[str], chunk: int = 2000) -> list[str]:
    """Through the producers' Lua script; returns the entry ids."""
    ids: list[str] = []
    for i in range(0, len(payloads), chunk):
        added = queue.enqueue([("normal", p) for p in payloads[i : i + chunk]])
        assert all(added)
        ids += added  # type: ignore[arg-type]
    return ids


def expected_ids(entry_ids: list[str], payloads: list[str]) -> set[str]:
    """The row id each entry must end up as."""
    return {
        json.loads(payload).get("id") or str(derived_id(entry_id))
        for entry_id, payload in zip(entry_ids, payloads, strict=True)
    }


# --- what the database and Redis hold ----------------------------------------------------


def db_ids(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [str(row[0]) for row in conn.execute("select id from public.audit_logs")]


def row_count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("select count(*) from public.audit_logs").fetchone()[0]


def assert_exactly_once(dsn: str, expected: set[str]) -> None:
    ids = db_ids(dsn)
    assert len(ids) == len(expected), f"{len(ids)} rows for {len(expected)} events"
    assert set(ids) == expected


def pending(client: redis.Redis, consumer: str | None = None) -> int:
    if consumer is None:
        return client.xpending(KEYS.stream, GROUP)["pending"]
    rows = client.xpending_range(KEYS.stream, GROUP, "-", "+", 1_000_000, consumername=consumer)
    return len(rows)


def drained(client: redis.Redis) -> bool:
    return client.xlen(KEYS.stream) == 0 and pending(client) == 0


def totals(client: redis.Redis) -> dict[str, float]:
    return Stats(client, KEYS).totals()


def reported(client: redis.Redis, total: str) -> int:
    """A process total summed over the live workers' heartbeats."""
    return sum(w[total] for w in list_workers(client, KEYS) if w["status"] == "alive")


def heartbeat_of(client: redis.Redis, proc: subprocess.Popen) -> dict[str, Any] | None:
    for worker in list_workers(client, KEYS):
        if worker["pid"] == proc.pid and worker["status"] == "alive":
            return worker
    return None


def blocked_on_lock(dsn: str, application: str | None = "auditq") -> int:
    """Sessions of this application (None: of any) waiting for a table lock (e.g. an insert
    behind LOCK TABLE)."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "select count(*) from pg_stat_activity"
            " where (%s::text is null or application_name = %s) and wait_event_type = 'Lock'",
            (application, application),
        ).fetchone()[0]


class TableLock:
    """LOCK TABLE audit_logs IN EXCLUSIVE MODE from a thread of its own: inserts block behind
    it (reads still pass) until release(). Taken from a thread because a second lock queued
    behind a blocked insert must wait without blocking the test."""

    application = "auditq-test-lock"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.acquired = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def start(self) -> TableLock:
        self._thread.start()
        return self

    def _hold(self) -> None:
        with psycopg.connect(self.dsn, application_name=self.application) as conn:
            conn.execute("LOCK TABLE public.audit_logs IN EXCLUSIVE MODE")
            self.acquired.set()
            self._release.wait(120)
            conn.rollback()

    def release(self) -> None:
        self._release.set()
        self._thread.join(30)

    def __enter__(self) -> TableLock:
        self.start()
        wait_for(self.acquired.is_set, "the table lock", 30)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


# --- an in-process inserter ----------------------------------------------------------

CONSUMER_PID = 4242


def make_inserter(redis_url, store, *, start=500, minimum=10) -> BatchInserter:
    client = connect(redis_url)
    queue = Queue(client, KEYS, max_len=1_000_000)
    queue.ensure_group()
    sizer = AdaptiveBatch(
        start=start, minimum=minimum, maximum=5000, max_bytes=4_000_000, target_ms=500
    )
    status = WorkerStatus(stopping=threading.Event(), batch_size=sizer.size, pid=CONSUMER_PID)
    return BatchInserter(
        queue, Stats(client, KEYS), store, sizer, status,
        max_event_bytes=1024, retry_base=0.1, retry_max=0.5,
    )  # fmt: skip
