"""What the evaluator keeps so that it needs neither the store nor Redis to alert.

The store holds the durable truth (rules, channels, silences, state, history); Redis holds
a copy of it; this process holds the latest in memory. Each run reads what answers:

- ``LastKnown``: rules, channels and silences as last read from the store. While the store
  is down the evaluator uses them from memory, or, just after a restart, from the copy in
  Redis (``Keys.alerts_config``, channel secrets included: Redis is as private as the store).
- ``StateBook``: each rule's alert state. Per rule the newest of memory, the store and the
  Redis copy (``Keys.alerts_states``) wins, so a process that takes over (during an outage or
  after one) resumes where the last leader stopped. Changes go to Redis at once and to the
  store when it answers (kept until then).
- ``Journal``: alert history rows, written when the store answers, in order.

With both down, only memory is left: the leader goes on with it (``lease``), and writes
everything back after recovery. A process restarted while both are down knows nothing and
waits.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from auditq.alerts.repo import Repo, Row, rows_by
from auditq.alerts.rules import Rule, RuleState
from auditq.alerts.tables import CHANNELS, HISTORY, RULES, SILENCES, STATES
from auditq.keys import Keys
from auditq.stores import DataRejected, StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    rules: list[Row]
    channels: dict[str, Row]
    silences: list[Row]
    from_store: bool = True

    def rule_objects(self) -> list[Rule]:
        return [Rule.from_row(row) for row in self.rules]


class LastKnown:
    def __init__(self, repo: Repo, client: redis.Redis, keys: Keys):
        self.repo = repo
        self.redis = client
        self.key = keys.alerts_config
        self.config: Config | None = None
        self._saved_digest: str | None = None

    def read(self, now: float) -> Config | None:
        """The configuration to evaluate with, or None if nothing is known yet."""
        try:
            self.config = Config(
                self.repo.list(RULES, order="created_at"),
                rows_by(self.repo.list(CHANNELS)),
                self.repo.list(SILENCES, [("ends_at", "gt", now)]),
            )
        except StoreError as error:
            if self.config is None:
                self.config = self._from_redis()
            if self.config is not None:
                log.debug("alerts: store unavailable (%s), using the last known rules", error)
                self.config = Config(
                    self.config.rules, self.config.channels, self.config.silences, False
                )
            return self.config
        self._to_redis(self.config)
        return self.config

    def _to_redis(self, config: Config) -> None:
        text = json.dumps(
            {"rules": config.rules, "channels": config.channels, "silences": config.silences},
            sort_keys=True,
        )
        digest = hashlib.sha256(text.encode()).hexdigest()
        try:
            # Unchanged: written only if missing (Redis restarted empty since).
            self.redis.set(self.key, text, nx=digest == self._saved_digest)
        except redis.RedisError:
            return
        self._saved_digest = digest

    def _from_redis(self) -> Config | None:
        try:
            raw = self.redis.get(self.key)
        except redis.RedisError:
            return None
        if not raw:
            return None
        data = json.loads(raw)
        return Config(data["rules"], data["channels"], data["silences"], False)


@dataclass
class _Entry:
    state: RuleState
    updated_at: float


@dataclass
class StateBook:
    repo: Repo
    redis: redis.Redis
    key: str
    entries: dict[str, _Entry] = field(default_factory=dict)
    unsaved: set[str] = field(default_factory=set)  # changed, not yet in the store
    stored: set[str] = field(default_factory=set)  # rules with a row in the store

    def refresh(self) -> None:
        """Take the newest state of each rule from the store and the Redis copy."""
        try:
            rows = self.repo.list(STATES)
        except StoreError:
            rows = None
        if rows is not None:
            self.stored = {row["rule_id"] for row in rows}
            for row in rows:
                self._offer(row["rule_id"], RuleState.from_row(row), row.get("updated_at") or 0)
        try:
            copies = self.redis.hgetall(self.key)
        except redis.RedisError:
            copies = {}
        for rule_id, raw in copies.items():
            data = json.loads(raw)
            rule_id = rule_id.decode() if isinstance(rule_id, bytes) else rule_id
            self._offer(rule_id, RuleState.from_row(data["state"]), data["updated_at"])

    def _offer(self, rule_id: str, state: RuleState, updated_at: float) -> None:
        # The newest wins, even over a change of ours the store has not taken yet: that one
        # is older than what another leader decided since (we lost the lead meanwhile).
        mine = self.entries.get(rule_id)
        if mine is not None and mine.updated_at >= updated_at:
            return
        self.entries[rule_id] = _Entry(state, updated_at)
        self.unsaved.discard(rule_id)

    def get(self, rule_id: str) -> RuleState:
        entry = self.entries.get(rule_id)
        return entry.state if entry else RuleState()

    def put(self, rule_id: str, state: RuleState, now: float, changed: bool) -> None:
        entry = self.entries.get(rule_id)
        if changed or entry is None:
            self.entries[rule_id] = _Entry(state, now)
            self.unsaved.add(rule_id)
        else:
            # The last value alone changes every run; it is saved with real changes only.
            entry.state = state
        if rule_id not in self.stored:
            self.unsaved.add(rule_id)

    def save(self, rule_ids: set[str]) -> None:
        """Write what changed: to Redis now, to the store as soon as it answers."""
        self.entries = {k: v for k, v in self.entries.items() if k in rule_ids}
        self.unsaved &= rule_ids
        # The copy is rewritten every run (a few small fields): one that Redis lost in a
        # restart is back before the next store outage needs it.
        copies: dict[Any, str] = {
            rule_id: json.dumps({"state": e.state.to_row(), "updated_at": e.updated_at})
            for rule_id, e in self.entries.items()
        }
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(self.key)
            if copies:
                pipe.hset(self.key, mapping=copies)
            pipe.execute()
        except redis.RedisError:
            pass  # the store (and memory) still have it
        for rule_id in sorted(self.unsaved):
            entry = self.entries[rule_id]
            row = {"rule_id": rule_id, **entry.state.to_row(), "updated_at": entry.updated_at}
            try:
                self.repo.upsert(STATES, row, on_conflict="rule_id")
            except DataRejected:  # the rule was deleted meanwhile
                pass
            except StoreError:
                return
            self.unsaved.discard(rule_id)
            self.stored.add(rule_id)


class Journal:
    """Alert history rows, in order; each is written once the store takes it. A long outage
    keeps the latest ``MAX_WAITING`` (history is for reading, the outbox is what sends)."""

    MAX_WAITING = 10_000

    def __init__(self, repo: Repo):
        self.repo = repo
        self.waiting: deque[Mapping[str, Any]] = deque(maxlen=self.MAX_WAITING)

    def record(self, row: Mapping[str, Any]) -> None:
        self.waiting.append(row)

    def flush(self) -> bool:
        """Write what waits; False if the store did not answer (the rest waits)."""
        while self.waiting:
            try:
                self.repo.insert(HISTORY, self.waiting[0])
            except DataRejected as error:
                log.warning("alerts: history row dropped: %s", error)
            except StoreError:
                return False
            self.waiting.popleft()
        return True
