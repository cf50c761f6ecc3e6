"""The one access hook (dashboard/access.py): every route in the url_map is covered by
iterating it, so a route added later is checked without editing these tests."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from auditq.devtools.embedded import free_port
from dashboard.access import access_of
from dashboard.ratelimit import LOGIN_FAILURES_PER_ROLE, LOGIN_LIMIT
from tests.dashboard.helpers import (
    ADMIN_PASSWORD,
    API_TOKEN,
    METRICS_TOKEN,
    VIEWER_PASSWORD,
    add_dead_letter,
    csrf_token,
    login,
)

# The only routes anyone may call without logging in. A new public route must be added
# here on purpose.
PUBLIC_ENDPOINTS = {"static", "health.healthz", "auth.login"}
SAMPLE_VALUES = {"fmt": "csv", "filename": "app.css"}


def urls(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) for every rule and method, with sample path values."""
    out = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            values = {arg: SAMPLE_VALUES.get(arg, "1700000000000-0") for arg in rule.arguments}
            url = app.url_for(rule.endpoint, **values)
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                out.append((rule.endpoint, method, url))
    return out


def is_login_redirect(response) -> bool:
    return response.status_code in (302, 303) and "/login" in response.headers["Location"]


def test_every_route_refuses_a_request_without_a_session(app, client):
    checked = 0
    for endpoint, method, url in urls(app):
        response = client.open(url, method=method)
        if endpoint in PUBLIC_ENDPOINTS:
            continue
        checked += 1
        assert response.status_code in (401, 403) or is_login_redirect(response), (
            endpoint,
            method,
            response.status_code,
        )
    assert checked >= 12


def test_only_the_listed_endpoints_are_public(app):
    with app.test_request_context():
        public = {e for e in app.view_functions if access_of(e).kind == "public"}
    assert public == PUBLIC_ENDPOINTS


def test_healthz_and_static_files_need_no_session(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/static/app.css").status_code == 200
    assert client.get("/static/vendor/htmx.min.js").status_code == 200


def test_an_unknown_url_without_a_session_goes_to_login(client):
    assert is_login_redirect(client.get("/no-such-page"))


def test_metrics_without_or_with_a_wrong_token_is_401(client):
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    ok = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert ok.status_code == 200


def test_a_logged_in_session_does_not_open_metrics(admin):
    # /metrics takes its token only: a scraper has no session, and a browser tab should not
    # turn into one.
    assert admin.get("/metrics").status_code == 401


def test_another_routes_token_does_not_open_metrics(client):
    response = client.get("/metrics", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert response.status_code == 401


def test_an_unset_token_disables_its_route(make_app):
    app = make_app(metrics_token=None)
    response = app.test_client().get("/metrics", headers={"Authorization": "Bearer "})
    assert response.status_code == 401


def test_every_post_route_without_a_csrf_token_is_refused(app, admin):
    posts = [(e, u) for e, m, u in urls(app) if m == "POST"]
    assert len(posts) >= 5
    for endpoint, url in posts:
        response = admin.post(url, data={})
        # 400: CSRF refused; 401: a bearer-token route (no cookies, so no CSRF) without it.
        assert response.status_code in (400, 401), (endpoint, response.status_code)
    # Still logged in: the refusals changed nothing.
    assert admin.get("/").status_code == 200


def test_a_post_with_a_token_from_another_session_is_refused(app, admin, redis_client, keys):
    other = app.test_client()
    login(other)
    foreign = csrf_token(other)
    dead = add_dead_letter(redis_client, keys, {"action": "a.b"})
    response = admin.post(f"/dead-letters/{dead}/discard", data={"csrf_token": foreign})
    assert response.status_code == 400
    assert redis_client.xlen(keys.dead) == 1


def test_a_viewer_cannot_requeue_or_discard(viewer, redis_client, keys):
    dead = add_dead_letter(redis_client, keys, {"action": "a.b"})
    token = csrf_token(viewer)
    for url in (
        f"/dead-letters/{dead}/requeue",
        f"/dead-letters/{dead}/discard",
        "/dead-letters/requeue-all",
    ):
        assert viewer.post(url, data={"csrf_token": token}).status_code == 403
    assert redis_client.xlen(keys.dead) == 1
    assert redis_client.xlen(keys.stream) == 0


def test_a_viewer_may_post_nothing_but_logout(app, viewer):
    token = csrf_token(viewer)
    for endpoint, method, url in urls(app):
        if method != "POST" or endpoint in ("auth.logout", "auth.login"):
            continue
        response = viewer.post(url, data={"csrf_token": token})
        assert response.status_code in (401, 403), (endpoint, response.status_code)
    assert viewer.post("/logout", data={"csrf_token": token}).status_code == 303
    assert is_login_redirect(viewer.get("/"))


def test_a_viewer_sees_pages_without_action_buttons(viewer, redis_client, keys):
    add_dead_letter(redis_client, keys, {"action": "a.b"})
    page = viewer.get("/dead-letters/").get_data(as_text=True)
    assert "a.b" in page
    assert "/requeue" not in page and "/discard" not in page


def test_wrong_password_is_refused_and_no_session_is_made(client):
    response = login(client, "guess")
    assert response.status_code == 401
    assert "Wrong password" in response.get_data(as_text=True)
    assert is_login_redirect(client.get("/"))


def test_login_attempts_are_limited_per_ip_across_processes(make_app):
    # Two apps stand for two gunicorn workers: the count is shared through Redis.
    first, second = make_app().test_client(), make_app().test_client()
    for attempt in range(LOGIN_LIMIT):
        assert login(first if attempt % 2 else second, "guess").status_code == 401
    limited = login(first, ADMIN_PASSWORD)
    assert limited.status_code == 429
    assert is_login_redirect(first.get("/"))
    # Another client IP is not affected.
    other = first.application.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', other.get("/login").text).group(1)
    response = other.post(
        "/login",
        data={"password": ADMIN_PASSWORD, "csrf_token": token},
        environ_base={"REMOTE_ADDR": "192.0.2.55"},
    )
    assert response.status_code == 303


def test_without_a_trusted_proxy_a_forged_forwarded_for_does_not_dodge_the_limit(make_app):
    def attempts(app):
        client = app.test_client()
        statuses = []
        for attempt in range(LOGIN_LIMIT + 1):
            token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
            forged = {"X-Forwarded-For": f"203.0.113.{attempt}"}
            response = client.post(
                "/login", data={"password": "guess", "csrf_token": token.group(1)}, headers=forged
            )
            statuses.append(response.status_code)
        return statuses

    assert attempts(make_app(trusted_proxies=0))[-1] == 429
    # Behind one trusted hop (Heroku) the header is the client's address, as it should be.
    assert set(attempts(make_app(trusted_proxies=1))) == {401}


def post_login(client, password: str, forwarded_for: str):
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    return client.post(
        "/login",
        data={"password": password, "csrf_token": token},
        headers={"X-Forwarded-For": forwarded_for},
    )


def test_by_default_a_fresh_forwarded_for_per_guess_still_gets_429(make_app, monkeypatch):
    # Issue 10: AUDITQ_TRUSTED_PROXIES used to default to 1 everywhere, dev mode included.
    monkeypatch.delenv("DYNO", raising=False)
    client = make_app().test_client()  # AUDITQ_TRUSTED_PROXIES unset, not on Heroku
    statuses = [post_login(client, "guess", f"198.51.100.{n}").status_code for n in range(12)]
    assert statuses[:LOGIN_LIMIT] == [401] * LOGIN_LIMIT
    assert statuses[LOGIN_LIMIT:] == [429, 429]
    # The locked-out address cannot log in with the right password and a fresh header.
    assert post_login(client, ADMIN_PASSWORD, "198.51.100.200").status_code == 429
    assert is_login_redirect(client.get("/"))


def test_failures_are_limited_per_login_whatever_the_address(make_app):
    # Behind a trusted proxy every guess may come from a new address (a botnet): the
    # per-address limit never trips, the per-login one does.
    client = make_app(trusted_proxies=1).test_client()
    guesses = [
        post_login(client, "guess", f"203.0.113.{n}").status_code
        for n in range(LOGIN_FAILURES_PER_ROLE)
    ]
    assert set(guesses) == {401}
    assert post_login(client, "guess", "192.0.2.1").status_code == 429
    # Locked: even the right password from a fresh address is refused (and a guesser
    # cannot tell it was right), for the admin and the viewer login alike.
    assert post_login(client, ADMIN_PASSWORD, "192.0.2.2").status_code == 429
    assert post_login(client, VIEWER_PASSWORD, "192.0.2.3").status_code == 429
    assert is_login_redirect(client.get("/"))


def test_a_cookie_saved_before_logout_does_not_work_after_it(make_app):
    # Issue 10: the signed cookie kept working after logout. Two apps stand for two
    # gunicorn workers: the revocation is shared through Redis.
    first, second = make_app().test_client(), make_app().test_client()
    login(first)
    saved = first.get_cookie("auditq_session").value
    assert first.post("/logout", data={"csrf_token": csrf_token(first)}).status_code == 303
    for client in (first, second):
        client.set_cookie("auditq_session", saved)
        assert is_login_redirect(client.get("/"))
        assert client.get("/api/v1/stats").status_code == 401
    # Logging in again makes a new session that works.
    assert login(second).status_code == 303
    assert second.get("/").status_code == 200


def test_logout_without_redis_still_ends_the_session_in_this_process(make_app):
    client = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0").test_client()
    assert login(client).status_code == 303
    saved = client.get_cookie("auditq_session").value
    client.post("/logout", data={"csrf_token": csrf_token(client)})
    client.set_cookie("auditq_session", saved)
    assert is_login_redirect(client.get("/"))


def test_changing_a_password_ends_its_sessions(make_app):
    app = make_app()
    c = app.test_client()
    login(c)
    changed = make_app(dashboard_password="a brand new password")
    # Same secret key, so the cookie still verifies: only the password fingerprint differs.
    moved = changed.test_client()
    moved.set_cookie("auditq_session", c.get_cookie("auditq_session").value)
    assert is_login_redirect(moved.get("/"))


def test_the_viewer_password_gives_the_viewer_role(viewer):
    assert 'class="role role-viewer"' in viewer.get("/").get_data(as_text=True)


def test_without_a_viewer_password_the_empty_password_is_no_login(make_app):
    app = make_app(dashboard_viewer_password=None)
    assert login(app.test_client(), "").status_code == 401


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)"],
)
def test_login_never_redirects_off_site(client, target):
    token = re.search(r'value="([^"]+)"', client.get("/login").text).group(1)
    response = client.post(
        "/login", data={"password": ADMIN_PASSWORD, "csrf_token": token, "next": target}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


def test_login_returns_to_the_page_asked_for(client):
    first = client.get("/explorer/?action=a.b")
    assert is_login_redirect(first)
    page = client.get(first.headers["Location"]).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    nxt = re.search(r'name="next" value="([^"]+)"', page).group(1)
    response = client.post(
        "/login", data={"password": ADMIN_PASSWORD, "csrf_token": token, "next": nxt}
    )
    assert response.headers["Location"] == "/explorer/?action=a.b"


def test_an_htmx_poll_after_the_session_ended_redirects_the_whole_tab(client):
    response = client.get("/", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login")


def test_get_requests_change_nothing(app, admin, redis_client, keys):
    dead = add_dead_letter(redis_client, keys, {"action": "a.b"})
    for endpoint, method, url in urls(app):
        if method == "GET" and endpoint not in ("static", "explorer.export"):
            admin.get(url.replace("1700000000000-0", dead))
    assert redis_client.xlen(keys.dead) == 1
    assert redis_client.xlen(keys.stream) == 0


def test_api_refusals_are_json(client):
    response = client.get("/api/v1/stats")
    assert response.status_code == 401
    assert response.is_json


def test_admin_and_viewer_passwords_are_distinct_roles(make_app):
    app = make_app(dashboard_viewer_password=ADMIN_PASSWORD)
    c = app.test_client()
    login(c, ADMIN_PASSWORD)
    # When both match, the admin role wins; the viewer's one cannot shadow it.
    assert 'role-admin"' in c.get("/").text
    assert VIEWER_PASSWORD not in c.get("/settings").text


def test_an_endpoint_cannot_declare_its_access_twice():
    from dashboard.access import admin_only, public

    def view():
        return ""

    with pytest.raises(TypeError, match="declared twice"):
        admin_only(public(view))


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("DELETE", "/api/v1/events", "POST"), ("PUT", "/api/v1/stats", "GET")],
)
def test_an_unsupported_method_on_the_api_is_a_json_405_not_the_login_page(
    client, method, path, allowed
):
    # Issue 10: GET /api/v1/events (POST only then) redirected to the HTML login.
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert response.is_json and "error" in response.get_json()
    assert allowed in response.headers["Allow"]
    assert "Location" not in response.headers


def test_an_unknown_api_path_is_a_json_404_and_an_unknown_page_still_asks_for_login(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.is_json
    assert is_login_redirect(client.get("/nothing-here"))
