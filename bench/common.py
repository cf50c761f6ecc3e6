"""Shared pieces of the benchmarks: real servers, percentiles, and the results file.

Benchmarks are scripts, not tests: each starts its own Redis, PostgreSQL and PostgREST
(the same launchers the tests use), measures auditq and its baselines in the same run,
prints a table, and replaces its own section of bench/RESULTS.md.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import statistics
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from auditq.devtools.embedded import (  # noqa: E402
    DEV_AUTHENTICATOR_PASSWORD,
    PostgresServer,
    RedisServer,
    create_supabase_roles,
)
from auditq.migrate import apply_migrations  # noqa: E402
from auditq.retention import partitions  # noqa: E402
from bench.nginx import NginxProxy  # noqa: E402
from tests.services import LocalSupabase, PostgRESTServer, make_jwt  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"


@dataclass
class NativeSupabase:
    """PostgREST behind nginx: SUPABASE_URL and the service-role key, as the apps see them."""

    server: PostgRESTServer
    proxy: NginxProxy
    service_key: str

    @property
    def url(self) -> str:
        return self.proxy.url


@dataclass
class Services:
    redis: RedisServer
    postgres: PostgresServer
    supabase: NativeSupabase

    @property
    def dsn(self) -> str:
        return self.postgres.dsn


@contextlib.contextmanager
def services() -> Iterator[Services]:
    with tempfile.TemporaryDirectory(prefix="auditq-bench-") as tmp:
        base = Path(tmp)
        with (
            RedisServer(base / "redis") as redis_server,
            PostgresServer(base / "pg", fast=True) as pg,
        ):
            create_supabase_roles(pg.dsn)
            apply_migrations(pg.dsn)
            no_autovacuum(pg.dsn)
            db_uri = pg.dsn_for("authenticator", DEV_AUTHENTICATOR_PASSWORD)
            # The tests' Python gateway would spend CPU on these cores for every request
            # and throttle the baseline: a native proxy, as Supabase's own gateway is.
            secret = LocalSupabase.jwt_secret
            with (
                PostgRESTServer(base / "postgrest", db_uri, secret) as postgrest,
                NginxProxy(base / "nginx", f"{postgrest.host}:{postgrest.port}") as proxy,
            ):
                supabase = NativeSupabase(postgrest, proxy, make_jwt("service_role", secret))
                yield Services(redis_server, pg, supabase)


def no_autovacuum(dsn: str) -> None:
    """Autovacuum off for the audit log's partitions, for the baselines and auditq alike.

    Its launcher wakes once a minute and vacuums and analyzes a partition that has grown:
    a few hundred ms of the store's CPU landing in whichever run is in progress, more often
    in the longer ones (seen: 3 us/event more store CPU in the drain's worker runs than in
    its raw runs; none in three rounds with autovacuum off, though a later run showed the
    gap again, so part of it is noise). Every run starts from an emptied table."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in partitions.names(conn):
            conn.execute(f"alter table public.{name} set (autovacuum_enabled = off)")


def cpu_seconds(pid: int) -> float:
    """CPU seconds a process and its children have used: its own, its reaped children's
    (backends that exited) and its live descendants'. Differences of two readings count a
    child that exited in between exactly once."""
    try:
        proc = psutil.Process(pid)
        times = proc.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
    except psutil.NoSuchProcess:
        return 0.0
    return total


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(samples_ms: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(samples_ms, 0.50),
        "p95": percentile(samples_ms, 0.95),
        "p99": percentile(samples_ms, 0.99),
        "p99.9": percentile(samples_ms, 0.999),
        "mean": statistics.fmean(samples_ms),
    }


def machine() -> str:
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} cores, {memory:.0f} GiB, {platform.system()} "
        f"{platform.machine()}, Python {platform.python_version()}"
    )


def table(headers: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        return f"{value:,.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def save(name: str, command: str, body: str) -> None:
    """Replace (or add) the section ``name`` in RESULTS.md."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"<!-- {name} -->\n## {name}\n\nCommand: `{command}`  \n"
        f"Run: {stamp} on {machine()}\n\n{body}\n<!-- /{name} -->"
    )
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else f"{text}\n{section}\n"
    RESULTS.write_text(text)
    print(section)
