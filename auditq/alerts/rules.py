"""The alert state machine: pure functions of (rule, state, value, time), no I/O.

States: ``normal -> pending -> firing -> recovering -> normal``.

- A value *breaches* when ``value <op> threshold`` holds.
- A value is *clear* when it is on the other side of the clear threshold (hysteresis):
  for ``>``/``>=`` rules ``value <= clear_threshold`` / ``value < clear_threshold``, for
  ``<``/``<=`` rules ``value >= clear_threshold`` / ``value > clear_threshold``. Without a
  clear threshold it is the threshold itself, so clear is exactly "not breaching".
- Between the two (the hysteresis band) nothing changes: a normal rule stays normal, a
  pending, firing or recovering one stays where it is. An alert that fired is therefore
  resolved only by a clear value, and a value oscillating inside the band is silent.
- ``normal``: a breach starts ``pending`` (at that time).
- ``pending``: clear goes back to ``normal`` (nothing was sent); ``for_seconds`` after the
  breach began it is ``firing`` (a new *episode*, and a trigger notification).
- ``firing``: clear goes to ``recovering``, or straight to ``normal`` (resolve) when
  ``keep_firing_seconds`` is 0. While firing, a trigger is re-sent every ``repeat_seconds``
  (0: never).
- ``recovering``: a value that is not clear goes back to ``firing`` (same episode, nothing
  sent); ``keep_firing_seconds`` after it cleared it is ``normal`` (resolve).
- No data (``value is None``): ``no_data="ok"`` treats it as clear, ``"alerting"`` as a
  breach, ``"keep"`` changes nothing.

Notifications: a trigger goes out when an episode starts, unless ``can_notify`` is false
(the rule is silenced, or has no channel); then it goes out later, at the first evaluation
that can notify while the alert is still firing. A resolve goes out only for an episode
whose trigger went out (and only with ``send_resolved``), silenced or not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

State = Literal["normal", "pending", "firing", "recovering"]
NotificationKind = Literal["trigger", "repeat", "resolve"]
OPS = (">", ">=", "<", "<=")
SEVERITIES = ("critical", "error", "warning", "info")
NO_DATA = ("ok", "alerting", "keep")
STATES = ("normal", "pending", "firing", "recovering")
# Times come back from the store rounded to microseconds; timers compare with this slack so
# "30 s after" is 30 s after, whatever the rounding did.
EPSILON = 0.001


def elapsed(now: float, since: float | None, seconds: float) -> bool:
    """At least ``seconds`` have passed from ``since`` to ``now``."""
    return since is not None and now - since >= seconds - EPSILON


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    metric: str | None = None  # kind "metric"
    op: str = ">"
    threshold: float = 0.0
    clear_threshold: float | None = None
    for_seconds: int = 0
    keep_firing_seconds: int = 0
    no_data: str = "keep"
    severity: str = "warning"
    channel_ids: tuple[str, ...] = ()
    repeat_seconds: int = 0
    send_resolved: bool = True
    enabled: bool = True
    # kinds "event" and "event_rate" (auditq.alerts.content)
    kind: str = "metric"
    match: dict[str, Any] | None = field(default=None, hash=False)
    group_by: str | None = None
    window_seconds: int | None = None
    created_at: float | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Rule:
        names = cls.__dataclass_fields__
        values = {k: v for k, v in row.items() if k in names and v is not None}
        values["channel_ids"] = tuple(str(c) for c in values.get("channel_ids") or ())
        if values.get("threshold") is not None:
            values["threshold"] = float(values["threshold"])
        if values.get("clear_threshold") is not None:
            values["clear_threshold"] = float(values["clear_threshold"])
        return cls(**values)

    @property
    def clear_at(self) -> float:
        return self.threshold if self.clear_threshold is None else self.clear_threshold

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.id)

    def breaches(self, value: float) -> bool:
        return _compare(value, self.op, self.threshold)

    def clears(self, value: float) -> bool:
        # The negation of the breach comparison, against the clear threshold.
        return not _compare(value, self.op, self.clear_at)

    def describe(self) -> str:
        if self.kind == "event":
            return "event matches " + _match_text(self.match)
        if self.kind == "seal_head":
            return "each new seal head"
        if self.kind == "event_rate":
            return (
                f"events matching {_match_text(self.match)} per {self.group_by}"
                f" in {self.window_seconds} s {self.op} {_fmt(self.threshold)}"
            )
        return f"{self.metric} {self.op} {_fmt(self.threshold)}"


def _match_text(match: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (match or {}).items())


def fingerprint(rule_id: str) -> str:
    """Stable per rule: PagerDuty's dedup_key, Alertmanager's fingerprint."""
    return hashlib.sha256(f"auditq-rule:{rule_id}".encode()).hexdigest()[:16]


def _compare(value: float, op: str, threshold: float) -> bool:
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    if op == "<=":
        return value <= threshold
    raise ValueError(f"unknown comparison {op!r}")


def _fmt(number: float) -> str:
    return f"{number:g}" if abs(number) < 1e15 else str(number)


@dataclass(frozen=True)
class RuleState:
    state: State = "normal"
    since_at: float | None = None  # when the current state began
    pending_at: float | None = None  # when the breach began (the `for` timer)
    firing_at: float | None = None  # when the current episode began firing
    recovering_at: float | None = None  # when the value cleared (the keep-firing timer)
    episode: int = 0  # firing episodes so far; keys the episode's notifications
    notified: bool = False  # the current episode's trigger went out
    notified_at: float | None = None  # last trigger or repeat (the repeat timer)
    repeats: int = 0
    last_value: float | None = None
    groups: dict[str, Any] = field(default_factory=dict, hash=False)  # event_rate: per value

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | None) -> RuleState:
        if not row:
            return cls()
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in row.items() if k in names})

    def to_row(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def active(self) -> bool:
        """Firing as far as the outside world is concerned."""
        return self.state in ("firing", "recovering")


@dataclass(frozen=True)
class Notification:
    kind: NotificationKind
    episode: int
    seq: int = 0  # the repeat number for repeats
    started_at: float | None = None  # when the episode began firing


@dataclass(frozen=True)
class Step:
    state: RuleState
    notifications: list[Notification] = field(default_factory=list)


def step(
    rule: Rule, state: RuleState, value: float | None, now: float, can_notify: bool = True
) -> Step:
    """Advance one evaluation. ``can_notify`` is false while silenced or without channels."""
    out: list[Notification] = []
    s = replace(state, last_value=value)

    if value is None and rule.no_data == "keep":
        condition = "keep"
    elif value is None:
        condition = "breach" if rule.no_data == "alerting" else "clear"
    elif rule.breaches(value):
        condition = "breach"
    elif rule.clears(value):
        condition = "clear"
    else:
        condition = "band"

    if s.state == "normal" and condition == "breach":
        s = replace(s, state="pending", since_at=now, pending_at=now)
    if s.state == "pending":
        if condition == "clear":
            s = _normal(s, now)
        elif condition != "keep" and elapsed(now, s.pending_at, rule.for_seconds):
            s = replace(
                s,
                state="firing",
                since_at=now,
                firing_at=now,
                episode=s.episode + 1,
                notified=False,
                notified_at=None,
                repeats=0,
            )
    elif s.state == "firing" and condition == "clear":
        s = replace(s, state="recovering", since_at=now, recovering_at=now)
    elif s.state == "recovering" and condition in ("breach", "band"):
        s = replace(s, state="firing", since_at=now, recovering_at=None)

    if (
        s.state == "recovering"
        and condition != "keep"
        and elapsed(now, s.recovering_at, rule.keep_firing_seconds)
    ):
        if s.notified and rule.send_resolved:
            out.append(Notification("resolve", s.episode, started_at=s.firing_at))
        s = _normal(s, now)

    if s.active and can_notify:
        if not s.notified:
            out.append(Notification("trigger", s.episode, started_at=s.firing_at))
            s = replace(s, notified=True, notified_at=now)
        elif rule.repeat_seconds > 0 and elapsed(now, s.notified_at, rule.repeat_seconds):
            out.append(Notification("repeat", s.episode, s.repeats + 1, s.firing_at))
            s = replace(s, repeats=s.repeats + 1, notified_at=now)
    return Step(s, out)


def reset(rule: Rule, state: RuleState, now: float) -> Step:
    """The rule was disabled: back to normal, resolving what was announced."""
    if state.state == "normal":
        return Step(state)
    out = []
    if state.active and state.notified and rule.send_resolved:
        out.append(Notification("resolve", state.episode, started_at=state.firing_at))
    return Step(_normal(state, now), out)


def _normal(s: RuleState, now: float) -> RuleState:
    return replace(
        s,
        state="normal",
        since_at=now,
        pending_at=None,
        firing_at=None,
        recovering_at=None,
        notified=False,
        notified_at=None,
        repeats=0,
    )


def silenced_rule_ids(silences: Iterable[Mapping[str, Any]], now: float) -> set[str]:
    """The rules with a silence in force at ``now`` (rows of alert_silences)."""
    return {
        s["rule_id"] for s in silences if s["starts_at"] <= now + EPSILON and now < s["ends_at"]
    }
