"""Settings page (dashboard/views/settings.py): every field, env names, secrets masked."""

from __future__ import annotations

from auditq.config import Settings, env_name
from auditq.urls import hide_password
from dashboard.views.settings import MASKED
from tests.dashboard.helpers import (
    ADMIN_PASSWORD,
    API_TOKEN,
    INGEST_TOKEN,
    METRICS_TOKEN,
    SECRET_KEY,
    VIEWER_PASSWORD,
    login,
)


def test_every_setting_is_listed_by_its_environment_variable(admin):
    html = admin.get("/settings").get_data(as_text=True)
    for field in Settings.model_fields:
        assert f"<code>{env_name(field)}</code>" in html, field


def test_no_secret_value_appears_and_each_says_set_or_not(make_app, redis_url):
    password_url = redis_url.replace("redis://", "redis://default:redispw@")
    pii_key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # base64 of 32 bytes
    app = make_app(redis_url=password_url, metrics_token=None, pii_key=pii_key)
    c = app.test_client()
    login(c)
    html = c.get("/settings").get_data(as_text=True)
    for secret in (
        ADMIN_PASSWORD,
        VIEWER_PASSWORD,
        SECRET_KEY,
        INGEST_TOKEN,
        API_TOKEN,
        "redispw",
        "postgres@",  # the DATABASE_URL (a secret as a whole)
        pii_key,
    ):
        assert secret not in html, secret
    assert "default:••••••@127.0.0.1" in html
    # secret, 2 passwords, ingest, api, database url, pii key
    assert html.count(">set</span>") == 7
    # metrics token, supabase key, jwt secret, seal key, old pii key
    assert html.count(">not set</span>") == 5
    assert METRICS_TOKEN not in html


def test_urls_without_credentials_are_shown_as_they_are():
    assert hide_password("redis://localhost:6379/0", MASKED) == "redis://localhost:6379/0"
    assert hide_password("rediss://:pw@host:1/0", MASKED) == "rediss://:••••••@host:1/0"
