"""The app factory (dashboard/__init__.py) and what every response carries
(dashboard/security.py): refusing to start unconfigured, headers, cookies, URL prefix."""

from __future__ import annotations

import pytest

from auditq.config import ConfigError
from dashboard import create_app
from dashboard.nav import NAV
from dashboard.security import CSP
from tests.dashboard.helpers import ADMIN_PASSWORD, login


def test_refuses_to_start_without_a_dashboard_password(make_settings):
    with pytest.raises(ConfigError, match="DASHBOARD_PASSWORD"):
        create_app(make_settings(dashboard_password=None))


def test_refuses_to_start_without_a_secret_key(make_settings):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(make_settings(secret_key=None))
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(make_settings(secret_key="short"))


def test_the_error_never_echoes_a_secret(make_settings):
    with pytest.raises(ConfigError) as caught:
        create_app(make_settings(dashboard_password=None, secret_key="s3cr3t"))
    assert "s3cr3t" not in str(caught.value)


def test_every_blueprint_module_is_registered(app):
    assert set(app.blueprints) == {
        "auth", "overview", "workers", "dead_letters", "explorer", "settings",
        "api_stats", "api_events", "alerts", "api_alerts", "metrics", "health",
        "integrity", "api_integrity", "retention", "privacy",
    }  # fmt: skip
    labels = [item.label for item in NAV]
    assert labels == [
        "Overview", "Workers", "Alerts", "Dead letters", "Integrity", "Retention", "Explorer",
        "Privacy",
        "Settings",
    ]  # fmt: skip
    assert all(item.endpoint in app.view_functions for item in NAV)


def test_pages_carry_the_security_headers(admin, client):
    for response in (admin.get("/"), client.get("/login"), client.get("/healthz")):
        assert response.headers["Content-Security-Policy"] == CSP
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert "frame-ancestors 'none'" in CSP and "unsafe" not in CSP
    assert admin.get("/").headers["Cache-Control"] == "no-store"


def test_no_page_has_inline_script_or_style(admin):
    for path in ("/", "/workers", "/dead-letters/", "/explorer/", "/privacy/", "/settings"):
        html = admin.get(path).get_data(as_text=True)
        assert "<script>" not in html and "<style" not in html and " style=" not in html
        assert " on" + "click=" not in html
        for tag in html.split("<script")[1:]:
            assert 'src="/static/' in tag.split(">")[0]


def test_the_session_cookie_is_httponly_and_lax(client):
    response = login(client)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http on localhost: a developer's machine


def test_the_session_cookie_is_secure_behind_an_https_proxy(make_app):
    c = make_app(trusted_proxies=1).test_client()  # a proxy is known to be in front
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.4"}
    page = c.get("/login", headers=proxied, base_url="http://auditq.example")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    response = c.post(
        "/login",
        data={"password": ADMIN_PASSWORD, "csrf_token": token},
        headers={**proxied, "Referer": "https://auditq.example/login"},
        base_url="http://auditq.example",
    )
    assert response.status_code == 303
    assert "Secure" in response.headers["Set-Cookie"]
    assert "Strict-Transport-Security" in response.headers


def test_plain_http_to_a_public_host_still_gets_a_secure_cookie(app):
    response = app.test_client().get("/login", base_url="http://auditq.example")
    # No cookie has been set yet on a GET of the login page; log in to see the flag.
    token = response.text.split('name="csrf_token" value="')[1].split('"')[0]
    cookie = response.headers.get("Set-Cookie", "")
    assert "Secure" in cookie
    assert token


def test_served_under_a_url_prefix(make_app):
    app = make_app(url_prefix="/ops")
    c = app.test_client()
    root = {"base_url": "http://localhost/"}  # as a server sends it: the prefix in the path

    assert c.get("/login", **root).status_code == 404
    first = c.get("/ops/", **root)
    assert first.status_code == 303 and first.headers["Location"].startswith("/ops/login")
    page = c.get("/ops/login", **root).text
    assert 'href="/ops/static/app.css"' in page
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    response = c.post("/ops/login", data={"password": ADMIN_PASSWORD, "csrf_token": token}, **root)
    assert response.headers["Location"] == "/ops/"
    assert "Path=/ops" in response.headers["Set-Cookie"]
    assert 'href="/ops/workers"' in c.get("/ops/", **root).text
    assert c.get("/ops/healthz", **root).status_code == 200
    assert c.get("/ops/static/app.css", **root).status_code == 200


def test_a_server_that_already_set_script_name_is_left_alone(make_app):
    app = make_app(url_prefix="/ops")
    # gunicorn with SCRIPT_NAME=/ops (and Flask's test client) pass the prefix this way.
    response = app.test_client().get("/healthz", base_url="http://localhost/ops/")
    assert response.status_code == 200


def test_an_unknown_page_is_a_404_page_for_a_logged_in_user(admin):
    response = admin.get("/nope")
    assert response.status_code == 404
    assert "<h1>404</h1>" in response.text


def test_a_path_outside_the_prefix_is_404(make_app):
    app = make_app(url_prefix="/ops")
    response = app.test_client().get("/opsx/login", base_url="http://localhost/")
    assert response.status_code == 404
