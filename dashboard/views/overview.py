"""The overview: queue, lag, rates, drops, failures, dead letters, workers, charts.

``/`` renders the page; the same URL asked by htmx (every AUDITQ_REFRESH_SECONDS while
the tab is visible) renders only ``partials/overview_live.html``.
"""

from __future__ import annotations

from flask import Blueprint, render_template, request

from dashboard import charts
from dashboard.ext import htmx
from dashboard.overview import RANGES, snapshot
from dashboard.resources import resources

bp = Blueprint("overview", __name__)


@bp.route("/")
def index() -> str:
    range_name = request.args.get("range", "1h")
    if range_name not in RANGES:
        range_name = "1h"
    snap = snapshot(resources(), range_name)
    context = {
        "snap": snap,
        "charts": charts.build(snap.get("series", []), range_name, snap.get("current_minute")),
        "range_name": range_name,
        "ranges": list(RANGES),
    }
    if htmx:
        return render_template("partials/overview_live.html", **context)
    return render_template("overview.html", **context)
