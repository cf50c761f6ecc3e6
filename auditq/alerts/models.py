"""Input models for rules (channels: ``auditq.alerts.channels``), shared by the dashboard's
forms and the JSON API, so both accept and refuse exactly the same things.

``parse_rule`` / ``parse_channel`` raise ``InvalidInput`` whose ``errors`` name each bad
field (``threshold``, ``config.url``) with a message that never echoes a secret.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from auditq.alerts import content
from auditq.alerts.metrics import METRICS
from auditq.alerts.rules import NO_DATA, OPS, SEVERITIES

MAX_SECONDS = 30 * 24 * 3600


class InvalidInput(ValueError):
    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors))

    @property
    def field(self) -> str:
        return self.errors[0][0]

    def as_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for field, message in self.errors:
            out.setdefault(field, message)
        return out


def errors_of(error: ValidationError, prefix: str = "") -> InvalidInput:
    found = []
    for err in error.errors(include_input=False, include_url=False):
        loc = [str(part) for part in err["loc"] if part != "__root__"]
        field = ".".join([prefix, *loc] if prefix else loc) or (prefix or "input")
        message = err["msg"].removeprefix("Value error, ")
        found.append((field, message))
    return InvalidInput(found)


def one_of(value: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``; else an error listing them."""
    if value not in choices:
        raise ValueError("must be one of " + ", ".join(choices))
    return value


# --- rules ----------------------------------------------------------------------------------


Scalar = str | int | float | bool


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100)
    kind: Literal["metric", "event", "event_rate", "seal_head"] = "metric"
    metric: str | None = None
    op: Literal[">", ">=", "<", "<="] | None = None
    threshold: float | None = None
    clear_threshold: float | None = None
    for_seconds: int = Field(default=0, ge=0, le=MAX_SECONDS)
    keep_firing_seconds: int = Field(default=0, ge=0, le=MAX_SECONDS)
    no_data: Literal["ok", "alerting", "keep"] = "keep"
    severity: Literal["critical", "error", "warning", "info"] = "warning"
    channel_ids: list[str] = Field(default_factory=list, max_length=20)
    repeat_seconds: int = Field(default=0, ge=0, le=MAX_SECONDS)
    send_resolved: bool = True
    enabled: bool = True
    # event and event_rate rules (auditq.alerts.content)
    match: dict[str, Scalar | list[Scalar]] | None = None
    group_by: str | None = None
    window_seconds: int | None = None

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str | None) -> str | None:
        return value if value is None else one_of(value, METRICS)

    @field_validator("match")
    @classmethod
    def _match(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must name at least one field")
        for name, wanted in value.items():
            if not content.is_field(name):
                raise ValueError(f"unknown field {name!r}: {content.FIELDS_HELP}")
            if isinstance(wanted, list) and not wanted:
                raise ValueError(f"{name}: an empty list matches nothing")
        return value

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: str | None) -> str | None:
        if value is not None and value not in content.GROUP_BY and not content.is_metadata(value):
            raise ValueError("must be one of " + ", ".join(content.GROUP_BY) + " or metadata.<key>")
        return value

    @field_validator("window_seconds")
    @classmethod
    def _window(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= content.MAX_WINDOW:
            raise ValueError(f"must be between 1 and {content.MAX_WINDOW} seconds (a day)")
        return value

    @field_validator("threshold", "clear_threshold")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("channel_ids")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        out = []
        for item in value:
            try:
                out.append(str(uuid.UUID(str(item))))
            except ValueError:
                raise ValueError("must be a list of channel ids") from None
        return list(dict.fromkeys(out))

    @field_validator("clear_threshold")
    @classmethod
    def _hysteresis(cls, clear: float | None, info: ValidationInfo) -> float | None:
        # Runs after op and threshold (declared before it); skipped if either was invalid.
        op, threshold = info.data.get("op"), info.data.get("threshold")
        if clear is None or op is None or threshold is None:
            return clear
        if op in (">", ">=") and clear > threshold:
            raise ValueError("must not be above the threshold for > and >=")
        if op in ("<", "<=") and clear < threshold:
            raise ValueError("must not be below the threshold for < and <=")
        return clear


RULE_FIELDS = tuple(RuleIn.model_fields)


# What each kind needs; the fields of the other kinds are cleared when it is saved.
NEEDS = {
    "metric": ("metric", "op", "threshold"),
    "event": ("match",),
    "event_rate": ("match", "group_by", "window_seconds", "op", "threshold"),
    "seal_head": (),
}
KIND_FIELDS = {
    "metric": ("metric", "for_seconds", "keep_firing_seconds", "no_data"),
    "event": ("match",),
    "event_rate": ("match", "group_by", "window_seconds"),
    "seal_head": (),
}


def parse_rule(data: Mapping[str, Any]) -> RuleIn:
    try:
        rule = RuleIn.model_validate(dict(data))
    except ValidationError as error:
        raise errors_of(error) from None
    missing = [name for name in NEEDS[rule.kind] if getattr(rule, name) is None]
    if missing:
        raise InvalidInput([(name, f"required for {rule.kind} rules") for name in missing])
    unused = {name for fields in KIND_FIELDS.values() for name in fields} - set(
        KIND_FIELDS[rule.kind]
    )
    cleared = {name: RuleIn.model_fields[name].get_default() for name in unused}
    if rule.kind in ("event", "seal_head"):
        cleared |= {"op": None, "threshold": None, "clear_threshold": None}
    return rule.model_copy(update=cleared)


__all__ = [
    "NO_DATA",
    "OPS",
    "RULE_FIELDS",
    "SEVERITIES",
    "InvalidInput",
    "RuleIn",
    "parse_rule",
]
