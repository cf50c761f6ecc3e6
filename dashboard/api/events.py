"""POST /api/v1/events: HTTP ingest for producers that cannot reach Redis.

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

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge

from auditq.client import AuditUnavailable
from auditq.events import EventError, build_event, encode
from dashboard.access import bearer
from dashboard.resources import resources

bp = Blueprint("api_events", __name__, url_prefix="/api/v1")

MAX_EVENTS = 1000
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

    events = []
    for index, item in enumerate(items):
        try:
            event = build_event(item, settings.redact_key_set)
        except EventError as error:
            return _error(
                400, "invalid event", field=error.field, message=error.message, index=index
            )
        try:
            encode(event, settings.max_event_bytes)
        except EventError as error:
            return _error(
                413, "event too large", field=error.field, message=error.message, index=index
            )
        events.append(event)

    try:
        results = resources().audit.log_many(events)
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


def _retry(response: tuple[Response, int], seconds: int = 5) -> tuple[Response, int]:
    resp, status = response
    resp.headers["Retry-After"] = str(seconds)
    return resp, status
