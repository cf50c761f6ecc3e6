"""auditq.fastapi against real Redis, served by a real uvicorn and through ASGITransport."""

import asyncio
import threading
from typing import Annotated

import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI, HTTPException

from auditq.async_client import AsyncAuditClient
from auditq.config import load_settings
from auditq.devtools.embedded import free_port
from auditq.fastapi import Audit, RequestAudit
from auditq.tokens import TokenVerifier
from tests.polling import wait_for
from tests.supabase_auth import JWT_SECRET, JwksServer, es256_token, hs256_token


def make_app(redis_url: str, jwks_url: str) -> FastAPI:
    audit = Audit(
        # A loaded CI box can keep a busy event loop from reading Redis' reply for 100 ms;
        # these tests are about actors, not the timeout (tests/auditq/test_async_client.py).
        client=AsyncAuditClient(load_settings(redis_url=redis_url, redis_timeout=5)),
        verifier=TokenVerifier(JWT_SECRET, jwks_url),
    )
    app = FastAPI(lifespan=audit.lifespan)
    audit.init_app(app)

    @app.post("/items/{item_id}")
    async def update_item(item_id: str, request_audit: Annotated[RequestAudit, Depends(audit)]):
        result = await request_audit.log("item.update", target_type="item", target_id=item_id)
        return {"outcome": result.outcome}

    @app.post("/as-admin")
    async def as_admin(request_audit: Annotated[RequestAudit, Depends(audit)]):
        await request_audit.log("item.update", actor_type="admin", actor_id="a_1", ip="10.9.9.9")

    @app.post("/users/{uid}/ban", dependencies=[Depends(audit.route("user.ban"))])
    async def ban(uid: str):
        if uid == "forbidden":
            raise HTTPException(403)
        if uid == "boom":
            raise RuntimeError("view failed")
        return {"banned": uid}

    @app.get("/plain")
    async def plain():
        return {}

    return app


@pytest.fixture
def app(redis_url, jwks):
    return make_app(redis_url, jwks.jwks_url)


class Served:
    """The app under uvicorn in a thread of its own (its own event loop), on a free port."""

    def __init__(self, app: FastAPI, **options):
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", **options
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_for(lambda: self.server.started, "uvicorn to start", timeout=30)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc_info):
        self.server.should_exit = True
        self.thread.join(timeout=30)


def asgi_client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")


def test_concurrent_requests_each_record_their_own_verified_actor(app, jwks, stream_events):
    # Half HS256, half ES256 (JWKS fetched on the server's loop), 200 requests at once.
    key = jwks.keys["key-1"]
    tokens = {
        f"u_{i}": hs256_token(f"u_{i}") if i % 2 else es256_token(key, "key-1", f"u_{i}")
        for i in range(200)
    }

    async def send_all(base_url):
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            return await asyncio.gather(
                *(
                    http.post(f"/items/of-{user}", headers={"Authorization": f"Bearer {token}"})
                    for user, token in tokens.items()
                )
            )

    with Served(app) as base_url:
        responses = asyncio.run(send_all(base_url))
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["outcome"] for r in responses} == {"queued"}
    events = stream_events()
    assert len(events) == 200
    assert all(e["target_id"] == f"of-{e['actor_id']}" for e in events)
    assert {e["actor_id"] for e in events} == set(tokens)
    assert {e["actor_type"] for e in events} == {"user"}
    assert {e["request_id"] for e in events} == {r.headers["X-Request-Id"] for r in responses}
    assert jwks.fetches == 1


def test_the_servers_proxy_settings_decide_the_ip(redis_url, jwks, stream_events):
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    with Served(make_app(redis_url, jwks.jwks_url), proxy_headers=False) as base_url:
        httpx.post(base_url + "/items/1", headers=forwarded)
    with Served(make_app(redis_url, jwks.jwks_url), forwarded_allow_ips="127.0.0.1") as base_url:
        httpx.post(base_url + "/items/2", headers=forwarded)
    assert [e["ip"] for e in stream_events()] == ["127.0.0.1", "203.0.113.9"]


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (hs256_token("u_42", secret="attacker-chosen-secret-" + "x" * 20), "invalid_signature"),
        (hs256_token("u_42", exp=1), "expired"),
        (hs256_token("u_42", aud="other"), "wrong_audience"),
        (es256_token(JwksServer().add_key("rogue"), "rogue"), "unknown_kid"),
    ],
    ids=["forged", "expired", "wrong-audience", "unknown-kid"],
)
def test_a_refused_token_is_recorded_as_anonymous_with_why(app, stream_events, token, reason):
    async def go():
        async with asgi_client(app) as http:
            await http.post("/items/1", headers={"Authorization": f"Bearer {token}"})

    asyncio.run(go())
    (event,) = stream_events()
    assert event["actor_type"] == "anonymous" and "actor_id" not in event
    assert event["metadata"] == {"auth_rejected": reason}


def test_request_ids_and_explicit_arguments(app, stream_events):
    async def go():
        async with asgi_client(app) as http:
            kept = await http.post("/items/1", headers={"X-Request-Id": "req-abc.123"})
            hostile = await http.post("/items/2", headers={"X-Request-Id": "a b" * 100})
            admin = await http.post(
                "/as-admin", headers={"Authorization": f"Bearer {hs256_token('u_1')}"}
            )
            plain = await http.get("/plain")
            return kept, hostile, admin, plain

    kept, hostile, admin, plain = asyncio.run(go())
    assert kept.headers["X-Request-Id"] == "req-abc.123"
    assert hostile.headers["X-Request-Id"] != "a b" * 100
    assert plain.headers["X-Request-Id"]
    first, second, third = stream_events()
    assert first["request_id"] == "req-abc.123"
    assert second["request_id"] == hostile.headers["X-Request-Id"]
    assert (third["actor_type"], third["actor_id"], third["ip"]) == ("admin", "a_1", "10.9.9.9")
    assert third["request_id"] == admin.headers["X-Request-Id"]


def test_route_auditing_records_method_route_status_and_actor(app, route_events):
    auth = {"Authorization": f"Bearer {hs256_token('u_5')}"}

    async def go():
        async with asgi_client(app) as http:
            statuses = [
                (await http.post("/users/u_9/ban", headers=auth)).status_code,
                (await http.post("/users/forbidden/ban", headers=auth)).status_code,
                (await http.get("/plain")).status_code,
            ]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://app",
        ) as http:
            statuses.append((await http.post("/users/boom/ban")).status_code)
        return statuses

    assert asyncio.run(go()) == [200, 403, 200, 500]
    route = "/users/{uid}/ban"
    assert route_events() == [
        ("user.ban", "success", 200, "POST", route, "u_5"),
        ("user.ban", "denied", 403, "POST", route, "u_5"),
        ("user.ban", "failure", 500, "POST", route, None),
    ]


def test_the_readme_example_runs(readme_example, stream_events):
    app = readme_example("FastAPI")["app"]
    auth = {"Authorization": f"Bearer {hs256_token('u_3')}"}

    async def go():
        async with app.router.lifespan_context(app), asgi_client(app) as http:
            published = await http.post("/posts/p_1/publish", headers=auth)
            deleted = await http.delete("/users/u_8", headers=auth)
            return published.json(), deleted.json()

    assert asyncio.run(go()) == ({"published": "p_1"}, {"deleted": "u_8"})
    publish, delete = stream_events()
    assert (publish["action"], publish["actor_id"], publish["target_id"]) == (
        "post.publish",
        "u_3",
        "p_1",
    )
    assert (delete["action"], delete["actor_id"], delete["metadata"]["route"]) == (
        "user.delete",
        "u_3",
        "/users/{user_id}",
    )
