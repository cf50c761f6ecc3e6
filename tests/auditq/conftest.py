"""Fixtures of the core tests: producers (clients, framework integrations, tokens) and both
stores (the store contract and the seals)."""

import json
import re
from pathlib import Path

import pytest

from auditq.config import Settings
from auditq.devtools.embedded import RedisServer, free_port
from auditq.seals import signing
from auditq.stores.postgres import PostgresStore
from auditq.stores.supabase import SupabaseStore
from tests.supabase_auth import JWT_SECRET, JwksServer


@pytest.fixture
def doomed_redis(tmp_path):
    """A Redis of the test's own, for tests that stop and restart it."""
    server = RedisServer(tmp_path / "redis", port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def jwks():
    """A Supabase-like JWKS endpoint publishing one ES256 key, ``key-1``."""
    with JwksServer() as server:
        server.add_key("key-1")
        yield server


@pytest.fixture
def stream_events(redis_client):
    """Reads the events in the stream (default prefix), oldest first, as dicts."""
    return lambda: [json.loads(f[b"event"]) for _, f in redis_client.xrange("audit:events")]


@pytest.fixture
def route_events(stream_events):
    """(action, outcome, status, method, route, actor_id) of each event, for route auditing."""
    return lambda: [
        (e["action"], e["outcome"], *(e["metadata"][k] for k in ("status", "method", "route")))
        + (e.get("actor_id"),)
        for e in stream_events()
    ]


@pytest.fixture
def readme_example(monkeypatch, redis_url):
    """Runs the README's ``### <title>`` Python example with the test Redis in the environment;
    returns its module namespace."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("SUPABASE_JWT_SECRET", JWT_SECRET)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()

    def run(title: str) -> dict:
        section = readme.split(f"\n### {title}\n", 1)[1]
        code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
        namespace: dict = {"__name__": f"readme_{title.lower()}"}
        exec(compile(code, f"README.md ### {title}", "exec"), namespace)  # noqa: S102
        return namespace

    return run


@pytest.fixture(params=["postgres", "supabase"])
def store(request, pg_dsn, postgrest, clean_db):
    if request.param == "postgres":
        opened = PostgresStore(pg_dsn, timeout=5)
    else:
        opened = SupabaseStore(postgrest.url, postgrest.service_key, timeout=5)
    yield opened
    opened.close()


# --- seal keys (tests/auditq/seals, retention, pii) ------------------------------------------


@pytest.fixture(scope="session")
def key_pair() -> signing.KeyPair:
    return signing.generate()


@pytest.fixture
def signer(key_pair) -> signing.Signer:
    return signing.signer(Settings(seal_key=key_pair.private))


@pytest.fixture
def checker(key_pair) -> signing.Checker:
    return signing.checker(Settings(seal_public_key=key_pair.public))
