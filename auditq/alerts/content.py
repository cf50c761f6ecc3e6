"""Rules on what the audit log says (issue 18): kinds ``event`` and ``event_rate``; and
``seal_head``, which sends each new seal head to its channels, so that a copy of the chain's
head lives off-box (issue 13: a rewritten chain no longer matches the copy).

- ``event``: one notification per matching event, never two. The database returns the rows
  whose transaction id lies in ``[watermark, horizon)`` (``public.alert_event_batch``; the
  horizon is ``pg_snapshot_xmin(pg_current_snapshot())``, as for the seals): every
  transaction below it has ended, so a row that commits late is still ahead of the watermark
  and is seen by a later run, never skipped. Queued and direct (critical) writes alike. The
  watermark (``alert_meta``: a txid and the last row id seen in it, so a batch may end
  inside a large transaction) moves only after the run's outbox rows are written; each
  row's key is ``rule:event:<event id>:channel``, so a run repeated after a crash, a second
  evaluator or a redelivered event adds nothing.
- ``event_rate``: matching events per ``group_by`` value over the last ``window_seconds``
  (``public.alert_event_counts``); each value has its own state machine (``rules.step``),
  so it fires once per value while over the threshold and resolves per value.

A rule applies to rows stored from its creation on, never to history. Matching runs in the
database (one implementation for both stores, and only matching rows travel).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from auditq.alerts.repo import Repo
from auditq.alerts.rules import Notification, Rule, RuleState, reset, step
from auditq.alerts.tables import META

log = logging.getLogger(__name__)

# The event's columns a match may name (besides metadata.<key>).
FIELDS = (
    "id",
    "action",
    "category",
    "actor_type",
    "actor_id",
    "target_type",
    "target_id",
    "tenant_id",
    "outcome",
    "ip",
    "user_agent",
    "request_id",
    "ingest_path",
)
GROUP_BY = ("ip", "actor_id", "tenant_id", "target_id")
FIELDS_HELP = "fields are " + ", ".join(FIELDS) + " and metadata.<key>"
MAX_WINDOW = 86400
# alert_meta key: {"txid": first txid not fully seen, "after": last id seen in it, or null}
WATERMARK = "event_watermark"
BATCH = 10_000  # events per run; the rest waits for the next run
# Issue 15 (encrypted personal fields): a group_by on an encrypted field must group by its
# keyed hash column, and the receiver must be shown the real value. Map the field to that
# column here and decrypt in ``shown_group``; until then every field is stored in clear.
HASHED_GROUP_COLUMNS: dict[str, str] = {}


def is_metadata(name: str) -> bool:
    return name.startswith("metadata.") and len(name) > len("metadata.")


def is_field(name: str) -> bool:
    return name in FIELDS or is_metadata(name)


def shown_group(rule: Rule, value: str) -> str:
    """The group value as the receiver sees it (issue 15 decrypts a hashed one here)."""
    return value


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


@dataclass
class Hit:
    """A notification a content rule wants sent (the evaluator writes it to the outbox)."""

    rule: Rule
    note: Notification
    value: float | None
    key: str  # unique per rule and notification; the channel id is appended
    event: dict[str, Any] | None = None
    group: str | None = None
    seal: dict[str, Any] | None = None


@dataclass
class Outcome:
    hits: list[Hit] = field(default_factory=list)
    states: dict[str, RuleState] = field(default_factory=dict)
    transitions: list[tuple[Rule, str, RuleState, RuleState]] = field(default_factory=list)
    watermark: dict[str, str | None] | None = None  # to save once the hits are in the outbox


class ContentRules:
    def __init__(self, repo: Repo):
        self.repo = repo

    def evaluate(
        self,
        rules: Iterable[Rule],
        states: Mapping[str, RuleState],
        can_notify: Mapping[str, bool],
        now: float,
        seal_head: Callable[[], dict[str, Any] | None] = lambda: None,
    ) -> Outcome:
        """Step every enabled content rule. ``can_notify``: per rule, not silenced and with a
        channel (an event seen while it cannot notify is not notified later). ``seal_head``:
        the newest seal (``auditq.seals.status.head``). Raises StoreError when the store does
        not answer (then nothing moved)."""
        out = Outcome()
        rules = list(rules)
        self._events([r for r in rules if r.kind == "event" and r.enabled], can_notify, out)
        heads = [r for r in rules if r.kind == "seal_head" and r.enabled and can_notify[r.id]]
        if heads:
            self._seal_heads(heads, seal_head(), states, out)
        for rule in rules:
            if rule.kind != "event_rate":
                continue
            if rule.enabled:
                self._rate(rule, states[rule.id], can_notify[rule.id], now, out)
            else:
                self._disabled(rule, states[rule.id], now, out)
        return out

    # --- kind "event" --------------------------------------------------------------------

    def _events(self, rules: list[Rule], can_notify: Mapping[str, bool], out: Outcome) -> None:
        marker = self.repo.get(META, WATERMARK, key="key")
        mark = (marker or {}).get("value") or {}
        spec = [{"match": r.match, "since": _iso(r.created_at or 0.0)} for r in rules]
        # Without a watermark yet, the first call only learns the horizon (no history).
        params = {
            "p_from": mark.get("txid") or "0",
            "p_after": mark.get("after"),
            "p_rules": spec if mark.get("txid") else [],
            "p_limit": BATCH,
        }
        batch = self.repo.call("alert_event_batch", params)
        events = batch["events"]
        if len(events) >= BATCH:  # the rest next run, from just after the last one seen
            out.watermark = {"txid": events[-1]["txid"], "after": events[-1]["event"]["id"]}
        else:
            out.watermark = {"txid": batch["horizon"], "after": None}
        for found in events:
            event = found["event"]
            for index in found["rules"]:
                rule = rules[index - 1]
                if not can_notify[rule.id]:
                    continue
                note = Notification("trigger", 0, started_at=_epoch(event.get("occurred_at")))
                key = f"{rule.id}:event:{event['id']}"
                out.hits.append(Hit(rule, note, 1.0, key, event=event))

    # --- kind "seal_head" ----------------------------------------------------------------

    def _seal_heads(
        self,
        rules: list[Rule],
        head: dict[str, Any] | None,
        states: Mapping[str, RuleState],
        out: Outcome,
    ) -> None:
        """Send each new seal head off-box (the newest one: it chains to every seal before).
        The rule's ``episode`` is the number of the last seal it sent."""
        if head is None:
            return
        for rule in rules:
            if head["seal_no"] <= states[rule.id].episode:
                continue
            sealed_at = datetime.fromisoformat(head["sealed_at"]).timestamp()
            note = Notification("trigger", head["seal_no"], started_at=sealed_at)
            key = f"{rule.id}:seal:{head['seal_no']}"
            out.hits.append(Hit(rule, note, float(head["rows_sealed"]), key, seal=head))
            out.states[rule.id] = replace(states[rule.id], episode=head["seal_no"])

    def save_watermark(self, mark: dict[str, str | None]) -> None:
        self.repo.upsert(META, {"key": WATERMARK, "value": mark}, "key")

    # --- kind "event_rate" ---------------------------------------------------------------

    def count(self, rule: Rule, since: float) -> dict[str, int]:
        """Matching events per group value since ``since`` (stored after the rule's creation)."""
        group = rule.group_by and HASHED_GROUP_COLUMNS.get(rule.group_by, rule.group_by)
        return self._counts(rule.match or {}, group, since, rule.created_at or 0.0)

    def preview(self, match: Mapping[str, Any], now: float) -> int:
        """How many stored events ``match`` selects in the hour before ``now`` (the form's
        preview line)."""
        return sum(self._counts(match, None, now - 3600, 0.0).values())

    def _counts(
        self, match: Mapping[str, Any], group: str | None, since: float, stored_since: float
    ) -> dict[str, int]:
        counts = self.repo.call(
            "alert_event_counts",
            {
                "p_match": dict(match),
                "p_group": group,
                "p_since": _iso(since),
                "p_stored_since": _iso(stored_since),
            },
        )
        return {str(k): int(v) for k, v in (counts or {}).items()}

    def _rate(
        self, rule: Rule, state: RuleState, can_notify: bool, now: float, out: Outcome
    ) -> None:
        assert rule.window_seconds is not None
        counts = self.count(rule, now - rule.window_seconds)
        groups: dict[str, Any] = {}
        for value in sorted(set(counts) | set(state.groups)):
            before = RuleState.from_row(state.groups.get(value))
            result = step(rule, before, float(counts.get(value, 0)), now, can_notify)
            after = replace(result.state, last_value=None)
            if after.state != before.state:
                out.transitions.append((rule, value, before, after))
            if after.state != "normal":
                groups[value] = after.to_row()
            _group_hits(rule, value, result.notifications, counts.get(value, 0), out)
        active = any(RuleState.from_row(g).active for g in groups.values())
        out.states[rule.id] = replace(
            state,
            state="firing" if active else "normal",
            groups=groups,
            last_value=float(max(counts.values(), default=0)),
        )

    def _disabled(self, rule: Rule, state: RuleState, now: float, out: Outcome) -> None:
        """Back to normal, resolving the group values that were announced."""
        for value, row in state.groups.items():
            before = RuleState.from_row(row)
            result = reset(rule, before, now)
            out.transitions.append((rule, value, before, result.state))
            _group_hits(rule, value, result.notifications, None, out)
        out.states[rule.id] = replace(state, state="normal", groups={}, last_value=None)


def _group_hits(
    rule: Rule, value: str, notes: list[Notification], count: float | None, out: Outcome
) -> None:
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]  # any text, fixed length
    shown = shown_group(rule, value)
    for note in notes:
        key = f"{rule.id}:{digest}:{note.episode}:{note.kind}:{note.seq}"
        out.hits.append(Hit(rule, note, count, key, group=shown))


def _epoch(value: Any) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value)).timestamp()
