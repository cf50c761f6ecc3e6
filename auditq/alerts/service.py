"""What the dashboard's pages and the JSON API do with alerts, in one place.

Both validate with the same models (``auditq.alerts.models``), store through the same
repository, and show channels only with their secrets masked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import redis

from auditq.alerts import channels as channel_kinds
from auditq.alerts import metrics as metrics_mod
from auditq.alerts.channels import CHANNEL_FIELDS, parse_channel, public_channel
from auditq.alerts.content import ContentRules
from auditq.alerts.messages import build_message, outbox_row
from auditq.alerts.models import RULE_FIELDS, InvalidInput, parse_rule
from auditq.alerts.notifiers import Link
from auditq.alerts.repo import Conflict, Repo, new_id, rows_by, valid_id
from auditq.alerts.rules import Notification, Rule, RuleState, silenced_rule_ids
from auditq.alerts.tables import CHANNELS, HISTORY, OUTBOX, RULES, SILENCES, STATES
from auditq.config import Settings
from auditq.keys import Keys


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class TestResult:
    ok: bool
    detail: str


def public_rule(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {name: row.get(name) for name in ("id", *RULE_FIELDS)}
    out["channel_ids"] = list(row.get("channel_ids") or [])
    out["created_at"] = row.get("created_at")
    out["updated_at"] = row.get("updated_at")
    out["builtin"] = bool(row.get("seed_key"))
    return out


class AlertService:
    def __init__(self, repo: Repo, redis_client: redis.Redis | None, settings: Settings):
        self.repo = repo
        self.redis = redis_client
        self.settings = settings
        self.keys = Keys(settings.prefix)

    # --- rules -----------------------------------------------------------------------------

    def list_rules(self) -> list[dict[str, Any]]:
        return [public_rule(r) for r in self.repo.list(RULES, order="created_at")]

    def _rule_row(self, rule_id: str) -> dict[str, Any]:
        row = self.repo.get(RULES, rule_id) if valid_id(rule_id) else None
        if row is None:
            raise NotFound("no such rule")
        return row

    def get_rule(self, rule_id: str) -> dict[str, Any]:
        return public_rule(self._rule_row(rule_id))

    def _check_channels(self, channel_ids: list[str]) -> None:
        if not channel_ids:
            return
        known = {c["id"] for c in self.repo.list(CHANNELS, [("id", "in", channel_ids)])}
        missing = [c for c in channel_ids if c not in known]
        if missing:
            raise InvalidInput([("channel_ids", f"no such channel: {', '.join(missing)}")])

    def create_rule(self, data: Mapping[str, Any]) -> dict[str, Any]:
        rule = parse_rule(data)
        self._check_channels(rule.channel_ids)
        now = time.time()
        row = {"id": new_id(), **rule.model_dump(), "created_at": now, "updated_at": now}
        return public_rule(self._write(lambda: self.repo.insert(RULES, row)))

    def update_rule(self, rule_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """Change the fields given (PATCH); the result is validated whole."""
        current = self._rule_row(rule_id)
        unknown = [k for k in data if k not in RULE_FIELDS]
        if unknown:
            raise InvalidInput([(unknown[0], "unknown field")])
        merged = {name: current.get(name) for name in RULE_FIELDS} | dict(data)
        rule = parse_rule(merged)
        self._check_channels(rule.channel_ids)
        changes = {**rule.model_dump(), "updated_at": time.time()}
        row = self._write(lambda: self.repo.update(RULES, rule_id, changes))
        if row is None:
            raise NotFound("no such rule")
        return public_rule(row)

    def delete_rule(self, rule_id: str) -> dict[str, Any]:
        row = self._rule_row(rule_id)
        self._resolve_before_delete(row)
        self.repo.delete(RULES, rule_id)
        return public_rule(row)

    def _resolve_before_delete(self, row: Mapping[str, Any]) -> None:
        """A rule deleted while it fires still tells its channels the alert is over."""
        state = RuleState.from_row(self.repo.get(STATES, row["id"], key="rule_id"))
        rule = Rule.from_row(row)
        if not (state.active and state.notified and rule.send_resolved):
            return
        now = time.time()
        note = Notification("resolve", state.episode, started_at=state.firing_at)
        channels = rows_by(self.repo.list(CHANNELS))
        rows = [
            outbox_row(rule, note, channels[c], state.last_value, now, self.settings.public_url)
            for c in rule.channel_ids
            if c in channels
        ]
        if rows:
            self.repo.insert_ignore(OUTBOX, rows, "key")

    def rules_overview(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every rule with its state and the metric's current value (read live, bounded)."""
        now = time.time() if now is None else now
        values = self.current_metrics(now)
        states = rows_by(self.repo.list(STATES), "rule_id")
        silenced = self.silenced_rule_ids(now)
        out = []
        for rule in self.list_rules():
            state = states.get(rule["id"]) or {}
            out.append(
                {
                    **rule,
                    "state": state.get("state", "normal") if rule["enabled"] else "disabled",
                    "since_at": state.get("since_at"),
                    "firing_at": state.get("firing_at"),
                    "value": values.get(rule["metric"])
                    if rule["kind"] == "metric"
                    else state.get("last_value"),
                    "condition": Rule.from_row(rule).describe(),
                    "silenced": rule["id"] in silenced,
                }
            )
        return out

    def preview(self, match: Any, now: float | None = None) -> int:
        """Events the match selects in the last hour; InvalidInput naming ``match`` if bad."""
        rule = parse_rule({"name": "preview", "kind": "event", "match": match})
        assert rule.match is not None
        return ContentRules(self.repo).preview(rule.match, time.time() if now is None else now)

    def firing(self) -> list[dict[str, Any]]:
        """Rules whose alert is firing (or recovering), most severe first."""
        states = self.repo.list(STATES, [("state", "in", ["firing", "recovering"])])
        if not states:
            return []
        rules = rows_by(self.repo.list(RULES, [("id", "in", [s["rule_id"] for s in states])]))
        order = {"critical": 0, "error": 1, "warning": 2, "info": 3}
        out = [
            {**public_rule(rules[s["rule_id"]]), **{k: s.get(k) for k in ("state", "firing_at")}}
            | {"value": s.get("last_value")}
            for s in states
            if s["rule_id"] in rules and rules[s["rule_id"]].get("enabled")
        ]
        return sorted(out, key=lambda r: (order.get(r["severity"], 9), r["firing_at"] or 0))

    def current_metrics(self, now: float | None = None) -> dict[str, float | None]:
        if self.redis is None:
            return dict.fromkeys(metrics_mod.METRICS)
        return metrics_mod.collect(
            self.redis, self.keys, self.settings.heartbeat_ttl, now, self.settings.shards
        )

    def evaluator_status(self) -> dict[str, Any] | None:
        if self.redis is None:
            return None
        try:
            raw = self.redis.get(self.keys.alerts_status)
        except redis.RedisError:
            return None
        return json.loads(raw) if raw else None

    # --- channels --------------------------------------------------------------------------

    def list_channels(self) -> list[dict[str, Any]]:
        return [public_channel(c) for c in self.repo.list(CHANNELS, order="created_at")]

    def _channel_row(self, channel_id: str) -> dict[str, Any]:
        row = self.repo.get(CHANNELS, channel_id) if valid_id(channel_id) else None
        if row is None:
            raise NotFound("no such channel")
        return row

    def get_channel(self, channel_id: str) -> dict[str, Any]:
        return public_channel(self._channel_row(channel_id))

    def create_channel(self, data: Mapping[str, Any]) -> dict[str, Any]:
        channel = parse_channel(data, allow_private=self.settings.alert_allow_private)
        now = time.time()
        row = {"id": new_id(), **channel.model_dump(), "created_at": now, "updated_at": now}
        return public_channel(self._write(lambda: self.repo.insert(CHANNELS, row)))

    def update_channel(
        self, channel_id: str, data: Mapping[str, Any], *, replace_config: bool = False
    ) -> dict[str, Any]:
        """Change the fields given. A config given replaces only the keys it has (PATCH),
        or all of it with ``replace_config`` (a form); secrets sent empty or masked stay."""
        current = self._channel_row(channel_id)
        unknown = [k for k in data if k not in CHANNEL_FIELDS]
        if unknown:
            raise InvalidInput([(unknown[0], "unknown field")])
        merged = {name: current.get(name) for name in CHANNEL_FIELDS} | dict(data)
        same_kind = data.get("kind", current["kind"]) == current["kind"]
        if not replace_config and same_kind and isinstance(data.get("config"), Mapping):
            merged["config"] = {**(current.get("config") or {}), **data["config"]}
        channel = parse_channel(
            merged, existing=current, allow_private=self.settings.alert_allow_private
        )
        changes = {**channel.model_dump(), "updated_at": time.time()}
        row = self._write(lambda: self.repo.update(CHANNELS, channel_id, changes))
        if row is None:
            raise NotFound("no such channel")
        return public_channel(row)

    def delete_channel(self, channel_id: str) -> dict[str, Any]:
        row = self._channel_row(channel_id)
        for rule in self.repo.list(RULES):
            ids = list(rule.get("channel_ids") or [])
            if channel_id in ids:
                ids.remove(channel_id)
                self.repo.update(RULES, rule["id"], {"channel_ids": ids, "updated_at": time.time()})
        self.repo.delete(CHANNELS, channel_id)
        return public_channel(row)

    def send_test(self, channel_id: str) -> TestResult:
        """Send a test notification now (one attempt, not through the outbox); record it."""
        channel = self._channel_row(channel_id)
        now = time.time()
        rule = Rule(
            id=f"test-{channel_id}",
            name=f"Test notification from auditq ({channel['name']})",
            metric="queue_length",
            op=">",
            threshold=0,
            severity="info",
        )
        message = build_message(
            rule, Notification("trigger", 0, started_at=now), 1.0, now, self.settings.public_url
        )
        message["kind"] = "test"
        with httpx.Client(follow_redirects=False) as http:
            link = Link(http, self.settings.alert_http_timeout, self.settings.alert_allow_private)
            outcome = channel_kinds.send(channel, message, link)
            if outcome.ok and channel["kind"] == "pagerduty":
                # Close the test incident again.
                resolved = {**message, "status": "resolved", "ends_at": now}
                outcome = channel_kinds.send(channel, resolved, link)
        self.repo.insert(
            HISTORY,
            {
                "happened_at": now,
                "event": "test",
                "channel_id": channel_id,
                "channel_name": channel["name"],
                "kind": "test",
                "status": "sent" if outcome.ok else "failed",
                "attempts": 1,
                "detail": outcome.detail[:500],
            },
        )
        return TestResult(outcome.ok, outcome.detail)

    # --- silences --------------------------------------------------------------------------

    def list_silences(self, now: float | None = None, *, include_expired: bool = False):
        now = time.time() if now is None else now
        where = [] if include_expired else [("ends_at", "gt", now)]
        rows = self.repo.list(SILENCES, where, order="starts_at", desc=True, limit=200)
        names = {r["id"]: r["name"] for r in self.repo.list(RULES)}
        return [
            {
                **r,
                "rule_name": names.get(r["rule_id"], "(deleted)"),
                "active": r["starts_at"] <= now < r["ends_at"],
            }
            for r in rows
        ]

    def silenced_rule_ids(self, now: float) -> set[str]:
        return silenced_rule_ids(self.repo.list(SILENCES, [("ends_at", "gt", now)]), now)

    def create_silence(
        self,
        rule_id: str,
        starts_at: float,
        ends_at: float,
        comment: str = "",
        created_by: str | None = None,
    ) -> dict[str, Any]:
        self._rule_row(rule_id)
        if ends_at <= starts_at:
            raise InvalidInput([("ends_at", "must be after the start")])
        if len(comment) > 1000:
            raise InvalidInput([("comment", "must be at most 1000 characters")])
        return self.repo.insert(
            SILENCES,
            {
                "id": new_id(),
                "rule_id": rule_id,
                "starts_at": starts_at,
                "ends_at": ends_at,
                "comment": comment,
                "created_by": created_by,
                "created_at": time.time(),
            },
        )

    def end_silence(self, silence_id: str, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        row = self.repo.get(SILENCES, silence_id) if valid_id(silence_id) else None
        if row is None:
            raise NotFound("no such silence")
        if row["ends_at"] <= now:
            return row
        changes: dict[str, Any] = {"ends_at": max(now, row["starts_at"] + 0.001)}
        return self.repo.update(SILENCES, silence_id, changes) or row

    # --- history ---------------------------------------------------------------------------

    def history(self, limit: int = 200, rule_id: str | None = None) -> list[dict[str, Any]]:
        where = [("rule_id", "eq", rule_id)] if rule_id else []
        return self.repo.list(HISTORY, where, order="happened_at", desc=True, limit=limit)

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _write(operation):
        try:
            return operation()
        except Conflict:
            raise InvalidInput([("name", "is already in use")]) from None
