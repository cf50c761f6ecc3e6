"""Dashboard fixtures: settings, the app on real Redis and Postgres (or PostgREST), logged-in
test clients, the app served for real on a free port, and headless Chromium.

Helpers (``login``, ``csrf_token``, ``add_dead_letter``, ...) are imported by the test
modules from here; fixtures are not (pytest provides those).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from auditq.config import Settings, load_settings
from auditq.devtools.embedded import HOST
from auditq.events import decode_entry
from auditq.keys import Keys
from auditq.stores.postgres import PostgresStore
from dashboard import create_app

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


@pytest.fixture
def make_settings(redis_url: str, clean_db: str) -> Callable[..., Settings]:
    """Settings for an app on the test Redis and the (emptied) test database."""

    def make(**overrides) -> Settings:
        values = {
            "redis_url": redis_url,
            "database_url": clean_db,
            "store": "postgres",
            "secret_key": SECRET_KEY,
            "dashboard_password": ADMIN_PASSWORD,
            "dashboard_viewer_password": VIEWER_PASSWORD,
            "metrics_token": METRICS_TOKEN,
            "ingest_token": INGEST_TOKEN,
            "api_token": API_TOKEN,
            "refresh_seconds": 0.5,
            # No background alert evaluator per test app (tests/dashboard/test_alerts_*
            # start one where they need it).
            "alerts_in_web": False,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def make_app(make_settings) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def make(**overrides) -> Flask:
        app = create_app(make_settings(**overrides))
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["auditq"].close()


@pytest.fixture
def app(make_app) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


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


@pytest.fixture
def admin(app: Flask) -> FlaskClient:
    c = app.test_client()
    assert login(c).status_code == 303
    return c


@pytest.fixture
def viewer(app: Flask) -> FlaskClient:
    c = app.test_client()
    assert login(c, VIEWER_PASSWORD).status_code == 303
    return c


@pytest.fixture
def keys(app: Flask) -> Keys:
    return app.extensions["auditq"].keys


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


# --- the app served for real, and a browser --------------------------------------------


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


@pytest.fixture
def live_server(app: Flask) -> Iterator[LiveServer]:
    server = LiveServer(app).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (no cookies) in light mode; console errors are collected."""
    context = browser.new_context(color_scheme="light", viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.console_errors = []  # type: ignore[attr-defined]
    tab.on(
        "console",
        lambda msg: tab.console_errors.append(msg.text) if msg.type == "error" else None,  # type: ignore[attr-defined]
    )
    yield tab
    context.close()


def screenshot(tab, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    return path
