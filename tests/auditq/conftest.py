"""Fixtures of the producer tests (clients, framework integrations, tokens)."""

import json

import pytest

from tests.supabase_auth import JwksServer


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
