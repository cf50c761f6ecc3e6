"""FastAPI integration: a dependency that logs with the request's actor, ip and request id.

    from fastapi import Depends, FastAPI
    from auditq.fastapi import Audit, RequestAudit

    audit = Audit()
    app = FastAPI(lifespan=audit.lifespan)
    audit.init_app(app)              # request ids, route auditing

    @app.post("/items", dependencies=[Depends(audit.route("item.create"))])
    async def create(request_audit: RequestAudit = Depends(audit)):
        await request_audit.log("item.price.set", target_id="i_1")

Each event gets actor_type/actor_id from the request's verified Supabase access token
(``auditq.tokens``), ip from the ASGI client address (so the server's proxy settings, e.g.
uvicorn's ``--forwarded-allow-ips``, decide which forwarded address to trust), user_agent,
and request_id from X-Request-Id or a new one, which every response carries back.
Explicit arguments override all of these. Logging goes through ``AsyncAuditClient``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auditq import web
from auditq.async_client import AsyncAuditClient
from auditq.events import AuditEvent
from auditq.producer import LogResult

_REQUEST_ID = "auditq_request_id"  # keys in the ASGI scope's state
_CONTEXT = "auditq_context"
_ROUTE = "auditq_route"


class Audit(web.Integration[AsyncAuditClient]):
    client_class = AsyncAuditClient

    def init_app(self, app: FastAPI) -> None:
        app.add_middleware(AuditMiddleware, audit=self)

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """Closes the client when the app stops (pass as ``FastAPI(lifespan=...)``)."""
        yield
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __call__(self, request: Request) -> RequestAudit:
        """The dependency: ``request_audit: RequestAudit = Depends(audit)``."""
        return RequestAudit(self.client, await self._context(request.scope))

    def route(
        self, action: str | None = None, *, category: str = "normal"
    ) -> Callable[[Request], Awaitable[None]]:
        """A dependency that records this route's requests: method, route, status, actor.

        ``action`` defaults to ``http.<method>``. The event is logged when the response
        starts (its status known) and before it leaves, so a critical one that cannot be
        recorded fails the request instead of vanishing.
        """

        async def mark(request: Request) -> None:
            request.state.auditq_route = (action, category)

        return mark

    async def _context(self, scope: Scope) -> dict[str, Any]:
        state = scope.setdefault("state", {})
        if _CONTEXT not in state:
            headers = Headers(scope=scope)
            client = scope.get("client")
            state[_CONTEXT] = web.request_fields(
                await self.verifier.aactor(headers.get("authorization")),
                client[0] if client else None,
                headers.get("user-agent"),
                _request_id(scope),
            )
        return state[_CONTEXT]

    async def _log_route(self, scope: Scope, status: int) -> None:
        action, category = scope["state"][_ROUTE]
        route = scope.get("route")
        method = scope["method"]
        await self.client.log(
            action or f"http.{method.lower()}",
            **web.merged(
                await self._context(scope),
                {
                    "category": category,
                    **web.route_fields(method, str(getattr(route, "path", scope["path"])), status),
                },
            ),
        )


class RequestAudit:
    """``log``/``log_many`` with the request's fields (what the dependency hands a view)."""

    def __init__(self, client: AsyncAuditClient, context: dict[str, Any]):
        self.client = client
        self.context = context

    async def log(self, action: str, **fields: Any) -> LogResult:
        return await self.client.log(action, **web.merged(self.context, fields))

    async def log_many(self, events: Iterable[dict[str, Any] | AuditEvent]) -> list[LogResult]:
        """Dicts get the request's fields; an ``AuditEvent`` is logged exactly as built."""
        return await self.client.log_many(web.with_context(self.context, events))


class AuditMiddleware:
    """Request ids in and out, and route auditing (pure ASGI: streaming stays streaming)."""

    def __init__(self, app: ASGIApp, audit: Audit):
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        started = False

        async def start_with_audit(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[web.REQUEST_ID_HEADER] = rid
                if _ROUTE in scope["state"]:
                    await self.audit._log_route(scope, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, start_with_audit)
        except Exception:
            # Unhandled: Starlette's outermost middleware answers 500 without passing here.
            if not started and _ROUTE in scope["state"]:
                await self.audit._log_route(scope, 500)
            raise


def _request_id(scope: Scope) -> str:
    state = scope.setdefault("state", {})
    if _REQUEST_ID not in state:
        state[_REQUEST_ID] = web.request_id(Headers(scope=scope).get(web.REQUEST_ID_HEADER))
    return state[_REQUEST_ID]
