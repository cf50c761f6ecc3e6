"""Workers: each one's heartbeat age, state, batch size, latency and totals.

Stale workers (killed, hung, cut off from Redis) stay listed and marked until their record
is pruned, so a dead worker is visible rather than silently missing.
"""

from __future__ import annotations

import time

import redis
from flask import Blueprint, render_template

from dashboard.ext import htmx
from dashboard.resources import resources

bp = Blueprint("workers", __name__)


@bp.route("/workers")
def index() -> str:
    res = resources()
    error = None
    workers: list = []
    try:
        workers = res.workers(time.time())
    except redis.RedisError as exc:
        error = f"Redis unreachable ({type(exc).__name__})"
    context = {
        "workers": workers,
        "error": error,
        "ttl": res.settings.heartbeat_ttl,
        "forget_after": res.settings.worker_forget_after,
        "now": time.time(),
    }
    if htmx:
        return render_template("partials/workers_table.html", **context)
    return render_template("workers.html", **context)
