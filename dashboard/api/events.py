"""/api/v1/events: HTTP ingest (POST) for producers that cannot reach Redis, and the JSON
read API (GET) over what is stored.

GET: bearer API_TOKEN, or a logged-in session. The explorer's filters as query parameters
(since, until, action, actor_type, actor_id, target_type, target_id, tenant_id, category,
outcome), ``limit`` (1 to 1,000, default 100) and ``cursor`` (the ``next`` of the previous
page; keyset, newest first). 200 ``{"events": [...], "next": cursor or null}``; 400
``{"error", "fields": {name: message}}``; 503 when the store does not answer. Personal
fields come decrypted (auditq/pii): ``[hidden]`` to a viewer's session unless
AUDITQ_PII_VIEWER_CLEAR, ``[erased]`` once their subject was erased.

Bearer INGEST_TOKEN. The body is one event object or a list of them (at most MAX_EVENTS),
validated exactly as ``AuditClient`` validates (it is the client that enqueues them).

- 202 ``{"ids": [...], "outcomes": [...]}``: every event queued (or written/deferred).
- 400 ``{"error", "field", "message", "index"}``: the first invalid event; nothing is sent.
- 413: the body is over the cap, or one event is over AUDITQ_MAX_EVENT_BYTES.
- 429 (Retry-After): the queue was full and some events were dropped; the body still has
  ids/outcomes, so a client resends only the ``dropped`` ones.
- 503 (Retry-After): Redis is unreachable; nothing was queued.
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, g, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge

from auditq.client import AuditUnavailable
from auditq.events import EventError, build_event, encode
from auditq.stores import MAX_QUERY_LIMIT, StoreError
from dashboard import explorer as ex
from dashboard.access import bearer
from dashboard.resources import resources

bp = Blueprint("api_events", __name__, url_prefix="/api/v1")

MAX_EVENTS = 1000
DEFAULT_LIMIT = 100
MIN_BODY = 1_048_576


def body_limit(max_event_bytes: int) -> int:
    """1 MiB, or room for a few events of the largest allowed size."""
    return max(MIN_BODY, 4 * max_event_bytes)


def _error(status: int, error: str, **extra) -> tuple[Response, int]:
    return jsonify({"error": error, **extra}), status


@bp.route("/events", methods=["POST"])
@bearer("ingest_token")
def ingest() -> ResponseReturnValue:
    settings = resources().settings
    request.max_content_length = body_limit(settings.max_event_bytes)
    if (request.content_length or 0) > request.max_content_length:
        return _error(413, "body too large", limit_bytes=request.max_content_length)
    try:
        raw = request.get_data(cache=False)
        # A chunked body has no Content-Length: the stream stops at the limit without a
        # word, so one more byte tells a body that fits from one cut short.
        if len(raw) >= request.max_content_length:
            request.stream.read(1)
    except RequestEntityTooLarge:
        return _error(413, "body too large", limit_bytes=request.max_content_length)
    if not request.mimetype or request.mimetype != "application/json":
        return _error(415, "Content-Type must be application/json")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return _error(400, "body is not valid JSON", field="body", message="invalid JSON")
    items = data if isinstance(data, list) else [data]
    if not items:
        return _error(400, "no events", field="body", message="an empty list")
    if len(items) > MAX_EVENTS:
        return _error(413, f"at most {MAX_EVENTS} events per request", limit_events=MAX_EVENTS)

    try:
        # The client validates the whole list before it sends anything, on its fast path
        # for plain dicts (auditq/bulk.py).
        results = resources().audit.log_many(items)
    except EventError as error:
        return _refused(items, settings.redact_key_set, settings.max_event_bytes, error)
    except AuditUnavailable:
        return _retry(_error(503, "Redis and the store are unreachable; nothing was accepted"))
    body = {
        "ids": [r.id for r in results],
        "outcomes": [r.outcome for r in results],
        "reasons": [r.reason for r in results],
    }
    reasons = {r.reason for r in results if r.outcome == "dropped"}
    if reasons - {"queue_full"}:  # redis_unavailable, or direct_failed (overflow=direct)
        message = "Redis is unreachable" if "redis_unavailable" in reasons else "store failed"
        return _retry((jsonify({"error": message, **body}), 503))
    if reasons:
        return _retry((jsonify({"error": "the queue is full", **body}), 429))
    return jsonify(body), 202


def _refused(
    items: list, redact_keys: frozenset[str], max_bytes: int, error: EventError
) -> tuple[Response, int]:
    """Which event was refused, and why, for a request nothing of was sent: the model's
    answer event by event (the client's first error is the model's)."""
    for index, item in enumerate(items):
        try:
            event = build_event(item, redact_keys)
        except EventError as invalid:
            return _error(
                400, "invalid event", field=invalid.field, message=invalid.message, index=index
            )
        try:
            encode(event, max_bytes)
        except EventError as large:
            return _error(
                413, "event too large", field=large.field, message=large.message, index=index
            )
    return _error(400, "invalid event", field=error.field, message=error.message)


def _retry(response: tuple[Response, int], seconds: int = 5) -> tuple[Response, int]:
    resp, status = response
    resp.headers["Retry-After"] = str(seconds)
    return resp, status


@bp.route("/events", methods=["GET"])
@bearer("api_token", session_ok=True)
def read() -> ResponseReturnValue:
    parsed = ex.parse_filters(request.args)
    errors = dict(parsed.errors)
    limit = request.args.get("limit", str(DEFAULT_LIMIT))
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_QUERY_LIMIT:
        errors["limit"] = f"must be a whole number from 1 to {MAX_QUERY_LIMIT}"
    cursor_text = request.args.get("cursor")
    cursor = ex.decode_cursor(cursor_text)
    if cursor_text and cursor is None:
        errors["cursor"] = "is not a cursor this API returned"
    if errors:
        return _error(400, "invalid query", fields=errors)
    store = resources().store
    if store is None:
        return _error(503, "no store is configured")
    reader = ex.Reader.for_role(resources().settings, g.role)
    try:
        rows, next_cursor = ex.page(store, reader, parsed.filters, cursor, int(limit))
    except StoreError as error:
        return _retry(_error(503, f"the store did not answer: {error}"))
    return jsonify({"events": [ex.plain_row(row) for row in rows], "next": next_cursor})
