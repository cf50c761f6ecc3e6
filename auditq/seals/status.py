"""What the Integrity page, GET /api/v1/integrity and alert metrics read about the seals.

Alert metrics (plain functions, for the alert engine to register):
- ``verify_findings(client, keys)``: findings of the last verify run (None before the first);
- ``unsealed_age_seconds(store)``: how long the oldest row no seal covers has waited (0 when
  everything is sealed): "rows unsealed for longer than N minutes" is this > N * 60;
- ``auditq.seals.reconcile.gap(client, keys)``: events that left the queue unaccounted.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import redis

from auditq.keys import Keys
from auditq.stores import Store

MAX_KEPT_FINDINGS = 100  # kept with the last verify result for the page


def head(store: Store) -> dict[str, Any] | None:
    """The newest seal as the API shows it: hex hash and signature, time, rows sealed."""
    seal = store.last_seal()
    if seal is None:
        return None
    return {
        "seal_no": seal["seal_no"],
        "hash": seal["hash"].hex(),
        "signature": seal["signature"].hex(),
        "public_key": seal["public_key"].hex(),
        "sealed_at": seal["sealed_at"].isoformat(),
        "rows_sealed": seal["total_rows"],
        "to_txid": seal["to_txid"],
    }


def unsealed(store: Store, last: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rows no seal covers yet: how many, and the age of the oldest (database clock aside,
    close enough for minutes-scale alerting)."""
    last = last if last is not None else head(store)
    count, oldest = store.unsealed(last["to_txid"] if last else 0)
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
    return {"rows": count, "oldest_age_seconds": max(0.0, age)}


def unsealed_age_seconds(store: Store) -> float:
    return unsealed(store)["oldest_age_seconds"]


def last_pass(client: redis.Redis, keys: Keys) -> dict[str, Any] | None:
    return _json(client.get(keys.seal_pass))


def last_verify(client: redis.Redis, keys: Keys) -> dict[str, Any] | None:
    return _json(client.get(keys.seal_verify))


def save_verify(client: redis.Redis, keys: Keys, result: dict[str, Any]) -> None:
    kept = dict(result, findings=result.get("findings", [])[:MAX_KEPT_FINDINGS])
    kept["finding_count"] = len(result.get("findings", [])) + result.get("more_findings", 0)
    kept.setdefault("at", time.time())
    client.set(keys.seal_verify, json.dumps(kept))


def verify_findings(client: redis.Redis, keys: Keys) -> float | None:
    result = last_verify(client, keys)
    if result is None or result.get("running"):
        return None
    if result.get("error"):
        return None  # could not run: no data, not "no findings"
    return float(result.get("finding_count", 0))


def _json(raw: bytes | str | None) -> dict[str, Any] | None:
    return json.loads(raw) if raw else None
