"""GET /api/v1/integrity: the seal head (hash, signature, time, rows sealed), the unsealed
backlog, the last verify and the queue reconciliation (bearer API_TOKEN, or a session).

Copy the head somewhere else now and then: ``verify --expect-head`` then proves that the
history up to it was not rewritten."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from dashboard.access import bearer
from dashboard.integrity import snapshot
from dashboard.resources import resources

bp = Blueprint("api_integrity", __name__, url_prefix="/api/v1")


@bp.route("/integrity")
@bearer("api_token", session_ok=True)
def integrity() -> ResponseReturnValue:
    snap = snapshot(resources())
    return jsonify(snap), 503 if snap["store_error"] else 200
