"""Dashboard fixtures: settings, the app on real Redis and Postgres (or PostgREST), logged-in
test clients, the app served for real on a free port, and headless Chromium. The helpers
the tests import live in tests/dashboard/helpers.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from auditq.config import Settings, load_settings
from auditq.keys import Keys
from dashboard import create_app
from tests.dashboard.helpers import (
    ADMIN_PASSWORD,
    API_TOKEN,
    CHROMIUM,
    CHROMIUM_ARGS,
    INGEST_TOKEN,
    METRICS_TOKEN,
    SECRET_KEY,
    VIEWER_PASSWORD,
    LiveServer,
    login,
)


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
