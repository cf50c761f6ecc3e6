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


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100)
    metric: str
    op: Literal[">", ">=", "<", "<="]
    threshold: float
    clear_threshold: float | None = None
    for_seconds: int = Field(default=0, ge=0, le=MAX_SECONDS)
    keep_firing_seconds: int = Field(default=0, ge=0, le=MAX_SECONDS)
    no_data: Literal["ok", "alerting", "keep"] = "keep"
    severity: Literal["critical", "error", "warning", "info"] = "warning"
    channel_ids: list[str] = Field(default_factory=list, max_length=20)
    repeat_seconds: int = Field(default=0, ge=0, le=MAX_SECONDS)
    send_resolved: bool = True
    enabled: bool = True

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        return one_of(value, METRICS)

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


def parse_rule(data: Mapping[str, Any]) -> RuleIn:
    try:
        return RuleIn.model_validate(dict(data))
    except ValidationError as error:
        raise errors_of(error) from None


__all__ = [
    "NO_DATA",
    "OPS",
    "RULE_FIELDS",
    "SEVERITIES",
    "InvalidInput",
    "RuleIn",
    "parse_rule",
]
