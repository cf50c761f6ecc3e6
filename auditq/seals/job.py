"""The seal job every worker schedules: one pass every AUDITQ_SEAL_INTERVAL seconds, one
worker at a time (a Redis lease), its outcome kept in Redis for the dashboard."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any

import redis

from auditq.config import ConfigError, Settings
from auditq.keys import Keys
from auditq.lease import RedisLease, holder_token
from auditq.scheduling import every
from auditq.seals import signing
from auditq.seals.sealer import PASS_BUDGET, seal_pass
from auditq.stores import Store, StoreError

log = logging.getLogger(__name__)

EXECUTOR = "auditq-seals"
LEASE_NAME = "seals"
# Longer than a pass can take (its budget plus one slow seal), so the lease never lapses
# under a running pass; released at the end of each pass.
LEASE_TTL = PASS_BUDGET + 60.0


class SealJob:
    def __init__(self, settings: Settings, store: Store, client: redis.Redis):
        self.settings = settings
        self.store = store
        self.redis = client
        self.keys = Keys(settings.prefix)
        self.signer = signing.signer(settings)
        self.lease = RedisLease(client, self.keys.lock(LEASE_NAME), LEASE_TTL, holder_token())

    def run(self) -> None:
        try:
            if not self.lease.acquire():
                return  # another worker is sealing
        except redis.RedisError as error:
            log.warning("seals: lease unavailable (%s); skipping this pass", type(error).__name__)
            return
        try:
            result = seal_pass(self.store, self.signer, self.settings.seal_grace)
            status: dict[str, Any] = {
                "at": time.time(),
                "seals": result.seals,
                "rows": result.rows,
                "head": result.head.hex() if result.head else None,
                "error": None,
            }
        except StoreError as error:
            log.warning("seals: pass failed: %s", error)
            status = {"at": time.time(), "seals": 0, "rows": 0, "head": None, "error": str(error)}
        finally:
            with contextlib.suppress(redis.RedisError):
                self.lease.release()
        with contextlib.suppress(redis.RedisError):
            self.redis.set(self.keys.seal_pass, json.dumps(status))


def add_job(
    scheduler: Any, settings: Settings, store: Store, client: redis.Redis
) -> SealJob | None:
    """Schedule sealing on an APScheduler scheduler; None (nothing added) without a key."""
    try:
        job = SealJob(settings, store, client)
    except ConfigError as error:
        log.warning("seals: not sealing: %s", error)
        return None
    every(scheduler, EXECUTOR, job.run, settings.seal_interval, id="seal")
    return job
