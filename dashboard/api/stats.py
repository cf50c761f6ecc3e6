"""GET /api/v1/stats: the overview as JSON (bearer API_TOKEN, or a logged-in session)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from dashboard.access import bearer
from dashboard.overview import RANGES, public_view, snapshot
from dashboard.resources import resources

bp = Blueprint("api_stats", __name__, url_prefix="/api/v1")


@bp.route("/stats")
@bearer("api_token", session_ok=True)
def stats() -> ResponseReturnValue:
    range_name = request.args.get("range", "1h")
    if range_name not in RANGES:
        return jsonify({"error": "range must be one of " + ", ".join(RANGES)}), 400
    snap = public_view(snapshot(resources(), range_name))
    return jsonify(snap), 200 if snap["redis"]["ok"] else 503
