"""Flask integration: ``audit.log()`` inside a request knows who, from where, which request.

    from auditq.flask import Audit
    audit = Audit(app)                      # or Audit() then audit.init_app(app)

    @app.post("/users/<uid>/ban")
    @audit.route("user.ban", category="critical")   # opt-in route auditing
    def ban(uid):
        audit.log("user.ban.reason", target_type="user", target_id=uid)

Each event gets actor_type/actor_id from the request's verified Supabase access token
(``auditq.tokens``), ip from ``request.remote_addr`` (so the app's ProxyFix, if any, decides
which forwarded address to trust), user_agent, and request_id from X-Request-Id or a new
one, which every response carries back. Explicit arguments override all of these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, has_request_context, request

from auditq.client import AuditClient
from auditq.events import AuditEvent
from auditq.producer import LogResult
from auditq.web import (
    REQUEST_ID_HEADER,
    Integration,
    merged,
    request_fields,
    request_id,
    route_fields,
    with_context,
)

View = TypeVar("View", bound=Callable[..., Any])
_ROUTE_MARK = "_auditq_route"


class Audit(Integration[AuditClient]):
    client_class = AuditClient

    def init_app(self, app: Flask) -> None:
        app.extensions["auditq"] = self
        app.after_request(self._after_request)

    # --- logging ------------------------------------------------------------------------

    def context(self) -> dict[str, Any]:
        """This request's event fields (empty outside a request); worked out once."""
        if not has_request_context():
            return {}
        if "auditq_context" not in g:
            g.auditq_context = request_fields(
                self.verifier.actor(request.headers.get("Authorization")),
                request.remote_addr,
                request.headers.get("User-Agent"),
                self._request_id(),
            )
        return g.auditq_context

    def log(self, action: str, **fields: Any) -> LogResult:
        return self.client.log(action, **merged(self.context(), fields))

    def log_many(self, events: Iterable[dict[str, Any] | AuditEvent]) -> list[LogResult]:
        """Dicts get the request's fields; an ``AuditEvent`` is logged exactly as built."""
        return self.client.log_many(with_context(self.context(), events))

    # --- route auditing -----------------------------------------------------------------

    def route(
        self, action: str | None = None, *, category: str = "normal"
    ) -> Callable[[View], View]:
        """Record every request to this view: method, route, status and actor.

        ``action`` defaults to ``http.<method>``; the event is logged after the view ran
        (its status known) and before the response leaves, so a critical one that cannot
        be recorded fails the request instead of vanishing.
        """

        def mark(view: View) -> View:
            setattr(view, _ROUTE_MARK, (action, category))
            return view

        return mark

    def _after_request(self, response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = self._request_id()
        view = current_app.view_functions.get(request.endpoint or "")
        mark = getattr(view, _ROUTE_MARK, None)
        if mark is not None:
            action, category = mark
            route = request.url_rule.rule if request.url_rule else request.path
            self.log(
                action or f"http.{request.method.lower()}",
                category=category,
                **route_fields(request.method, route, response.status_code),
            )
        return response

    def _request_id(self) -> str:
        if "auditq_request_id" not in g:
            g.auditq_request_id = request_id(request.headers.get(REQUEST_ID_HEADER))
        return g.auditq_request_id
