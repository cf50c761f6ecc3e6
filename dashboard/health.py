"""GET /healthz (public): 200 when Redis and the store answer, 503 naming what failed.

For Heroku's and load balancers' checks; it says which part failed and never why in a way
that could leak a secret (error class names only).
"""

from __future__ import annotations

import redis
from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from auditq.stores import StoreError
from dashboard.access import public
from dashboard.resources import resources

bp = Blueprint("health", __name__)


@bp.route("/healthz")
@public
def healthz() -> ResponseReturnValue:
    res = resources()
    checks: dict[str, str] = {}
    try:
        res.redis.ping()
        checks["redis"] = "ok"
    except redis.RedisError as error:
        checks["redis"] = f"unreachable ({type(error).__name__})"
    store = None
    try:
        store = res.store
    except Exception as error:  # a store that cannot even be built is as down as one that fails
        checks["store"] = f"unavailable ({type(error).__name__})"
    if "store" not in checks:
        if store is None:
            checks["store"] = "not configured"
        else:
            try:
                store.ping()
                checks["store"] = "ok"
            except StoreError:
                checks["store"] = f"unreachable ({store.name})"
    ok = all(value == "ok" for value in checks.values())
    return jsonify({"status": "ok" if ok else "failing", "checks": checks}), 200 if ok else 503
