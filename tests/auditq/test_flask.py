"""auditq.flask against real Redis: actor from a verified token, request fields, routes."""

import pytest
from flask import Flask, abort
from werkzeug.middleware.proxy_fix import ProxyFix

from auditq.client import AuditClient
from auditq.config import load_settings
from auditq.flask import Audit
from auditq.tokens import TokenVerifier
from tests.supabase_auth import JWT_SECRET, es256_token, hs256_token


@pytest.fixture
def app(redis_url, jwks):
    app = Flask(__name__)
    audit = Audit(
        app,
        client=AuditClient(load_settings(redis_url=redis_url)),
        verifier=TokenVerifier(JWT_SECRET, jwks.jwks_url),
    )

    @app.post("/profile")
    def update_profile():
        audit.log("profile.update", target_type="profile", target_id="p_1")
        return "ok"

    @app.post("/as-admin")
    def as_admin():
        audit.log("profile.update", actor_type="admin", actor_id="a_1", ip="10.9.9.9")
        return "ok"

    @app.post("/users/<uid>/ban")
    @audit.route("user.ban")
    def ban(uid):
        if uid == "forbidden":
            abort(403)
        if uid == "boom":
            raise RuntimeError("view failed")
        return "banned"

    @app.get("/plain")
    def plain():
        return "not audited"

    return app


def test_the_actor_comes_from_a_verified_hs256_token(app, stream_events):
    response = app.test_client().post(
        "/profile",
        headers={"Authorization": f"Bearer {hs256_token('u_42')}", "User-Agent": "probe/1.0"},
    )
    (event,) = stream_events()
    assert (event["actor_type"], event["actor_id"]) == ("user", "u_42")
    assert (event["ip"], event["user_agent"]) == ("127.0.0.1", "probe/1.0")
    assert event["request_id"] == response.headers["X-Request-Id"]
    assert len(event["request_id"]) == 32
    assert event["target_id"] == "p_1" and event["metadata"] == {}


def test_an_es256_token_is_checked_against_the_jwks(app, stream_events, jwks):
    token = es256_token(jwks.keys["key-1"], "key-1", "u_7")
    app.test_client().post("/profile", headers={"Authorization": f"Bearer {token}"})
    (event,) = stream_events()
    assert (event["actor_type"], event["actor_id"]) == ("user", "u_7")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (hs256_token("u_42", secret="attacker-chosen-secret-" + "x" * 20), "invalid_signature"),
        (hs256_token("u_42", exp=1), "expired"),
        (hs256_token("u_42", aud="other"), "wrong_audience"),
    ],
    ids=["forged", "expired", "wrong-audience"],
)
def test_a_refused_token_is_recorded_as_anonymous_with_why(app, stream_events, token, reason):
    app.test_client().post("/profile", headers={"Authorization": f"Bearer {token}"})
    (event,) = stream_events()
    assert event["actor_type"] == "anonymous" and "actor_id" not in event
    assert event["metadata"] == {"auth_rejected": reason}


def test_explicit_arguments_override_the_request(app, stream_events):
    app.test_client().post("/as-admin", headers={"Authorization": f"Bearer {hs256_token('u_1')}"})
    (event,) = stream_events()
    assert (event["actor_type"], event["actor_id"], event["ip"]) == ("admin", "a_1", "10.9.9.9")


def test_the_callers_request_id_is_kept_and_a_hostile_one_replaced(app, stream_events):
    client = app.test_client()
    kept = client.post("/profile", headers={"X-Request-Id": "req-abc.123"})
    replaced = client.post("/profile", headers={"X-Request-Id": "<script>" + "x" * 300})
    assert kept.headers["X-Request-Id"] == "req-abc.123"
    assert replaced.headers["X-Request-Id"] != "<script>" + "x" * 300
    assert [e["request_id"] for e in stream_events()] == [
        "req-abc.123",
        replaced.headers["X-Request-Id"],
    ]
    assert client.get("/plain").headers["X-Request-Id"]  # every response carries one


def test_x_forwarded_for_counts_only_behind_the_apps_proxyfix(app, stream_events):
    headers = {"X-Forwarded-For": "203.0.113.9"}
    app.test_client().post("/profile", headers=headers)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)
    app.test_client().post("/profile", headers=headers)
    assert [e["ip"] for e in stream_events()] == ["127.0.0.1", "203.0.113.9"]


def test_a_long_user_agent_is_cut_not_an_error(app, stream_events):
    response = app.test_client().post("/profile", headers={"User-Agent": "u" * 5000})
    assert response.status_code == 200
    (event,) = stream_events()
    assert len(event["user_agent"]) == 1024


def test_route_auditing_records_method_route_status_and_actor(app, route_events):
    client = app.test_client()
    auth = {"Authorization": f"Bearer {hs256_token('u_5')}"}
    assert client.post("/users/u_9/ban", headers=auth).status_code == 200
    assert client.post("/users/forbidden/ban", headers=auth).status_code == 403
    assert client.post("/users/boom/ban").status_code == 500
    assert client.get("/plain").status_code == 200
    route = "/users/<uid>/ban"
    assert route_events() == [
        ("user.ban", "success", 200, "POST", route, "u_5"),
        ("user.ban", "denied", 403, "POST", route, "u_5"),
        ("user.ban", "failure", 500, "POST", route, None),
    ]


def test_init_app_later_and_outside_a_request_logs_plainly(redis_url, stream_events):
    audit = Audit(client=AuditClient(load_settings(redis_url=redis_url)))
    app = Flask(__name__)
    audit.init_app(app)
    assert app.extensions["auditq"] is audit
    audit.log("job.run")
    (event,) = stream_events()
    assert event.keys() == {"id", "occurred_at", "action", "category", "metadata"}


def test_the_readme_example_runs(readme_example, stream_events):
    app = readme_example("Flask")["app"]
    client = app.test_client()
    auth = {"Authorization": f"Bearer {hs256_token('u_3')}", "X-Forwarded-For": "198.51.100.4"}
    assert client.post("/posts/p_1/publish", headers=auth).json == {"published": "p_1"}
    assert client.delete("/users/u_8", headers=auth).status_code == 204
    publish, delete = stream_events()
    assert (publish["action"], publish["actor_id"], publish["target_id"]) == (
        "post.publish",
        "u_3",
        "p_1",
    )
    assert publish["ip"] == "198.51.100.4"  # the example's ProxyFix trusts one hop
    # Critical, with no store configured here: deferred to the stream, still recorded.
    assert (delete["action"], delete["category"], delete["metadata"]["status"]) == (
        "user.delete",
        "critical",
        204,
    )
