"""The worker's side of the heartbeat: what this process reports, and the job that
publishes it. The contract (keys, fields, alive/stale/forget) is ``auditq.heartbeat``."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

import redis

from auditq import heartbeat
from auditq.keys import Keys

State = Literal["idle", "draining", "backoff", "stopping"]

log = logging.getLogger(__name__)


@dataclass
class WorkerStatus:
    """What this process reports; updated by the batch thread, read by the heartbeat thread."""

    stopping: threading.Event
    batch_size: int
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    busy: Literal["idle", "draining", "backoff"] = "idle"
    last_latency_ms: float = 0.0
    inserted: int = 0
    failed_batches: int = 0
    dead_lettered: int = 0
    retried: int = 0

    @property
    def id(self) -> str:
        """Also the consumer name in the group: unique per process, readable by operators."""
        return f"{self.host}:{self.pid}"

    @property
    def state(self) -> State:
        return "stopping" if self.stopping.is_set() else self.busy

    def fields(self) -> dict[str, str | int | float]:
        """The contract's fields but ``last_beat`` (``heartbeat.record`` stamps it)."""
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "started_at": self.started_at,
            "state": self.state,
            "batch_size": self.batch_size,
            "last_latency_ms": round(self.last_latency_ms, 1),
            "inserted": self.inserted,
            "failed_batches": self.failed_batches,
            "dead_lettered": self.dead_lettered,
            "retried": self.retried,
        }


class Heartbeat:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        status: WorkerStatus,
        ttl: float,
        forget_after: float = heartbeat.DEFAULT_FORGET_AFTER,
    ):
        self.redis = client
        self.keys = keys
        self.status = status
        self.ttl = ttl
        self.forget_after = forget_after

    def beat(self) -> None:
        """Publish the status (the scheduler's heartbeat job); a Redis error is only logged."""
        try:
            heartbeat.record(
                self.redis,
                self.keys,
                self.status.id,
                self.status.fields(),
                ttl=self.ttl,
                forget_after=self.forget_after,
                now=time.time(),
            )
        except redis.RedisError as error:
            log.warning("heartbeat failed worker=%s error=%s", self.status.id, type(error).__name__)

    def remove(self) -> None:
        """On a clean exit: readers should see the worker gone, not stale."""
        try:
            heartbeat.remove(self.redis, self.keys, self.status.id)
        except redis.RedisError as error:
            log.warning(
                "heartbeat removal failed worker=%s error=%s", self.status.id, type(error).__name__
            )
