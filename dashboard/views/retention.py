"""Retention: the partitions of audit_logs with rows and sizes, which months the next pass
archives and when, and the last pass's result (auditq/retention).

``/retention`` renders the page; asked by htmx it renders ``partials/retention_live.html``.
"""

from __future__ import annotations

from typing import Any

import redis
from flask import Blueprint, render_template

from auditq.retention.job import RETENTION_INTERVAL
from auditq.retention.partitions import overview
from auditq.retention.retain import cutoff_for, is_due
from auditq.retention.status import last_pass
from auditq.stores import StoreError
from dashboard.ext import htmx
from dashboard.resources import Resources, resources

bp = Blueprint("retention", __name__, url_prefix="/retention")


@bp.route("/")
def index() -> str:
    snap = snapshot(resources())
    if htmx:
        return render_template("partials/retention_live.html", snap=snap)
    return render_template("retention.html", snap=snap)


def snapshot(res: Resources) -> dict[str, Any]:
    settings = res.settings
    cutoff = cutoff_for(settings)
    snap: dict[str, Any] = {
        "days": settings.retention_days,
        "archive_url": settings.archive_url,
        "cutoff": cutoff.timestamp() if cutoff else None,
        "partitions": [],
        "store_error": None,
        "redis_error": None,
        "last": None,
        "next_at": None,
    }
    try:
        for part in overview(settings):
            due = bool(cutoff and part["month"] and is_due(part["month"], cutoff))
            snap["partitions"].append({**part, "due": due})
    except StoreError as error:
        snap["store_error"] = f"store unavailable: {str(error).split(':')[0]}"
    try:
        snap["last"] = last_pass(res.redis, settings.prefix)
    except redis.RedisError as error:
        snap["redis_error"] = f"Redis unreachable ({type(error).__name__})"
    if settings.retention_days and snap["last"]:
        snap["next_at"] = snap["last"]["at"] + RETENTION_INTERVAL
    return snap
