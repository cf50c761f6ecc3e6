"""Fixtures for the alert tests: repositories on both stores, settings, real receivers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from auditq.alerts.evaluator import Evaluator
from auditq.alerts.repo import PostgresRepo, Repo, SupabaseRepo
from auditq.config import Settings, load_settings
from auditq.stores.supabase import SupabaseStore
from tests.auditq.alerts.helpers import Receiver, SmtpSink
from tests.worker.helpers import Workers


@pytest.fixture(params=["postgres", "supabase"])
def repo(request, clean_db, postgrest) -> Iterator[Repo]:
    """The repository on each store: psycopg SQL, and supabase-py through real PostgREST."""
    opened: Repo
    if request.param == "postgres":
        opened = PostgresRepo(clean_db, timeout=5)
    else:
        opened = SupabaseRepo(SupabaseStore(postgrest.url, postgrest.service_key, timeout=5).client)
    yield opened
    opened.close()


@pytest.fixture
def pg_repo(clean_db) -> Iterator[PostgresRepo]:
    opened = PostgresRepo(clean_db, timeout=5)
    yield opened
    opened.close()


@pytest.fixture
def settings(redis_url, clean_db) -> Settings:
    return load_settings(
        redis_url=redis_url,
        store="postgres",
        database_url=clean_db,
        supabase_url=None,
        supabase_service_role_key=None,
        prefix="audit",
        heartbeat_ttl=5,
        alert_interval=1,
        alert_lease=30,
        alert_http_timeout=5,
        alert_retry_max=60,
        alert_max_attempts=5,
        alert_allow_private=True,  # the receivers listen on 127.0.0.1
    )


@pytest.fixture
def evaluators(settings, redis_client: redis.Redis) -> Iterator[Callable[..., Evaluator]]:
    """Makes evaluators (as separate processes would have); each is closed at the end."""
    made: list[Evaluator] = []

    def make(repo: Repo, **kwargs) -> Evaluator:
        evaluator = Evaluator(settings, redis_client, repo, **kwargs)
        made.append(evaluator)
        return evaluator

    yield make
    for evaluator in made:
        evaluator.close()


@pytest.fixture
def worker_procs(tmp_path, redis_url, clean_db, redis_server) -> Iterator[Workers]:
    """Real `python -m worker` processes (each runs the evaluator too); killed at the end."""
    procs = Workers(tmp_path, redis_url, clean_db)
    yield procs
    for proc in procs.procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    redis_server.start()  # a test that stopped it may have failed half-way


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    server = SmtpSink()
    yield server
    server.close()
