"""The integrity snapshot (seals, backlog, last verify, reconciliation) for the Integrity page
and GET /api/v1/integrity, and the background "Verify now" run.

Each part is read on its own, so a database that is down still shows the queue's
reconciliation, and a Redis that is down still shows the head.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis

from auditq.config import ConfigError
from auditq.seals import reconcile, signing, status
from auditq.seals.verify import NoSeals, verify
from auditq.stores import StoreError
from dashboard.resources import Resources

log = logging.getLogger(__name__)

HOURS = 24
_running = threading.Lock()  # one background verify per process


def snapshot(res: Resources) -> dict[str, Any]:
    snap: dict[str, Any] = {"store_error": None, "redis_error": None}
    store = res.store
    if store is None:
        snap["store_error"] = "no store configured"
    else:
        try:
            snap["head"] = status.head(store)
            snap["unsealed"] = status.unsealed(store, snap["head"])
        except StoreError as error:
            snap["store_error"] = f"store unavailable: {str(error).split(':')[0]}"
    try:
        snap["last_pass"] = status.last_pass(res.redis, res.keys)
        snap["last_verify"] = status.last_verify(res.redis, res.keys)
        snap["reconciliation"] = {
            "gap": reconcile.gap(res.redis, res.keys),
            "hours": [h.as_dict() for h in reconcile.hours(res.redis, res.keys, HOURS)],
        }
    except redis.RedisError as error:
        snap["redis_error"] = f"Redis unreachable ({type(error).__name__})"
    return snap


def start_verify(res: Resources) -> bool:
    """Run verify in a background thread; False when one is already running here."""
    if not _running.acquire(blocking=False):
        return False
    status.save_verify(res.redis, res.keys, {"running": True, "at": time.time()})
    threading.Thread(target=_verify, args=(res,), name="integrity-verify", daemon=True).start()
    return True


def _verify(res: Resources) -> None:
    started = time.time()
    try:
        store = res.store
        if store is None:
            raise ConfigError("no store configured")
        report = verify(store, signing.checker(res.settings))
        result: dict[str, Any] = {**report.to_json(), "error": None}
    except (ConfigError, NoSeals, StoreError) as error:
        result = {"ok": False, "error": str(error), "findings": []}
    except Exception:  # a thread has no one to raise to: record it, then log it
        log.exception("integrity verify failed")
        result = {"ok": False, "error": "verify failed (see the web log)", "findings": []}
    finally:
        _running.release()
    result |= {"at": time.time(), "seconds": round(time.time() - started, 3)}
    try:
        status.save_verify(res.redis, res.keys, result)
    except redis.RedisError as error:
        log.warning("integrity verify result not saved: %s", type(error).__name__)
