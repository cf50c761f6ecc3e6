"""Every Redis key auditq uses, derived from one prefix.

A prefix with a hash tag (``{audit}``) puts all of them in one Redis Cluster slot, which
the enqueue script needs (it touches the stream and the counters atomically).

Shards (AUDITQ_SHARDS): shard 0 is the prefix's own keys, exactly as without shards; shard
``i`` > 0 has the same keys under ``shard_prefix(prefix, i)``, whose hash tag differs from
every other shard's, so a cluster spreads the shards over its masters while each shard's
keys stay in one slot. Keys that are not the queue's (workers, locks, sessions, the
highest shard count) exist once, under the prefix itself.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "auditq"  # the consumer group every worker joins


def hash_tag(key: str) -> str | None:
    """The part of ``key`` Redis Cluster hashes, if it has a hash tag: what lies between the
    first ``{`` and the next ``}``, when that is not empty (Redis' own rule)."""
    start = key.find("{")
    end = key.find("}", start + 1) if start >= 0 else -1
    return key[start + 1 : end] if end > start + 1 else None


def shard_prefix(prefix: str, shard: int) -> str:
    """The prefix of shard ``shard``'s keys: ``audit`` -> ``audit:{1}``, ``{audit}`` ->
    ``{audit:1}`` (the shard number goes inside an existing tag, which would otherwise win).
    The settings allow braces in a prefix only as one hash tag, so these are the cases."""
    if shard == 0:
        return prefix
    if hash_tag(prefix) is None:
        return f"{prefix}:{{{shard}}}"
    end = prefix.find("}")
    return f"{prefix[:end]}:{shard}{prefix[end:]}"


def shard_keys(prefix: str, shards: int) -> list[Keys]:
    """The keys of shards 0 .. shards - 1."""
    return [Keys(shard_prefix(prefix, i)) for i in range(shards)]


@dataclass(frozen=True)
class Keys:
    prefix: str = "audit"

    @property
    def stream(self) -> str:
        return f"{self.prefix}:events"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    @property
    def failures(self) -> str:
        """Hash: stream entry id -> the first error that left it pending (for its dead letter)."""
        return f"{self.prefix}:failures"

    @property
    def counters(self) -> str:
        """Hash of running totals (enqueued, dropped_queue_full, ...)."""
        return f"{self.prefix}:counters"

    def minute(self, epoch_minute: int) -> str:
        """Hash of the same counters for one minute (the dashboard's charts, alert rates)."""
        return f"{self.prefix}:stats:{epoch_minute}"

    @property
    def shards(self) -> str:
        """The highest AUDITQ_SHARDS any process has used: workers drain that many streams,
        so lowering the setting never strands events in a shard nobody reads."""
        return f"{self.prefix}:shards"

    @property
    def workers(self) -> str:
        """Sorted set: worker id -> time of its last heartbeat."""
        return f"{self.prefix}:workers"

    def worker(self, worker_id: str) -> str:
        """Hash with one worker's heartbeat details; expires when the worker stops beating."""
        return f"{self.prefix}:worker:{worker_id}"

    def lock(self, name: str) -> str:
        """A lease (``alerts``: the one alert evaluator)."""
        return f"{self.prefix}:lock:{name}"

    @property
    def seal_pass(self) -> str:
        """JSON: the last seal pass (when, seals, rows, head, error), written by the sealer."""
        return f"{self.prefix}:seals:pass"

    @property
    def seal_verify(self) -> str:
        """JSON: the last verify result the dashboard ran (ok, counts, head, findings)."""
        return f"{self.prefix}:seals:verify"

    @property
    def alerts_status(self) -> str:
        """JSON the alert evaluator writes after each run: when, who, what it measured."""
        return f"{self.prefix}:alerts:status"

    def revoked_session(self, session_id: str) -> str:
        """Marks a dashboard session ended by logout; expires when its cookie would."""
        return f"{self.prefix}:session:revoked:{session_id}"

    def login_attempts(self, window: int, who: str) -> str:
        """Counter of the dashboard's login attempts by ``who`` (``ip:<address>`` or
        ``login:<role>``) in one fixed window; expires with it."""
        return f"{self.prefix}:ratelimit:login:{window}:{who}"

    @property
    def alerts_config(self) -> str:
        """JSON copy of the last rules, channels and silences read from the store, so an
        evaluator started while the store is down still knows them (channel secrets included)."""
        return f"{self.prefix}:alerts:config"

    @property
    def alerts_states(self) -> str:
        """Hash: rule id -> JSON of its alert state, the copy that outlives a store outage."""
        return f"{self.prefix}:alerts:states"
