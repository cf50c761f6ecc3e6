"""Dashboard test helpers: the test apps' secrets, logging in, CSRF tokens, dead letters as
the worker writes them, an in-process drain, the app served for real, and screenshots.

Test modules import these; the fixtures live in tests/dashboard/conftest.py.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import redis
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import expect
from werkzeug.serving import make_server

from auditq.decoding import decode_entry
from auditq.devtools.embedded import HOST
from auditq.keys import Keys
from auditq.stores.postgres import PostgresStore

ADMIN_PASSWORD = "correct horse battery staple"
VIEWER_PASSWORD = "viewer-only-password"
SECRET_KEY = "test-secret-key-0123456789abcdef"
METRICS_TOKEN = "metrics-token-abc"
INGEST_TOKEN = "ingest-token-def"
API_TOKEN = "api-token-ghi"

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client: FlaskClient, password: str = ADMIN_PASSWORD):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"password": password, "csrf_token": token})


def csrf_token(client: FlaskClient, path: str = "/") -> str:
    """A CSRF token for this client's session (read from a page, as a browser would)."""
    return csrf_from(client.get(path).get_data(as_text=True))


def add_dead_letter(
    client: redis.Redis,
    keys: Keys,
    event: dict | str,
    reason: str = "postgres 22P02: invalid input",
    entry_id: str = "1700000000000-0",
) -> str:
    """A dead letter as the worker writes it (XADD to the dead stream)."""
    raw = event if isinstance(event, str) else json.dumps(event)
    return client.xadd(
        keys.dead,
        {
            "event": raw,
            "reason": reason,
            "entry_id": entry_id,
            "deliveries": 5,
            "dead_at": 1700000000000,
        },
    ).decode()


def drain_into_store(client: redis.Redis, keys: Keys, dsn: str, max_bytes: int = 65_536) -> int:
    """What a worker does, in-process: decode every queued entry, insert, delete it."""
    entries = client.xrange(keys.stream, count=10_000)
    events = [decode_entry(eid.decode(), fields, max_bytes) for eid, fields in entries]
    store = PostgresStore(dsn, timeout=5)
    try:
        inserted = store.insert_events(events)
    finally:
        store.close()
    if entries:
        client.xdel(keys.stream, *[eid for eid, _ in entries])
    return inserted


class LiveServer:
    def __init__(self, app: Flask):
        self.server = make_server(HOST, 0, app, threaded=True)
        self.url = f"http://{HOST}:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)
        self.server.server_close()


def screenshot(tab, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    return path


def log_in(tab, base: str) -> None:
    tab.goto(base + "/")
    expect(tab).to_have_url(base + "/login?next=/")
    tab.fill("#password", ADMIN_PASSWORD)
    tab.click("button[type=submit]")
    expect(tab).to_have_url(base + "/")
    expect(tab.locator("h1")).to_have_text("Overview")
