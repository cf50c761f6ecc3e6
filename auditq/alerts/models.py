"""Input models for rules and channels: one pydantic model per resource, shared by the
dashboard's forms and the JSON API, so both accept and refuse exactly the same things.

``parse_rule`` / ``parse_channel`` raise ``InvalidInput`` whose ``errors`` name each bad
field (``threshold``, ``config.url``) with a message that never echoes a secret.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

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

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
KINDS = ("slack", "pagerduty", "webhook", "email")
MAX_SECONDS = 30 * 24 * 3600
_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")
MASK = "••••••••"


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


def _errors(error: ValidationError, prefix: str = "") -> InvalidInput:
    found = []
    for err in error.errors(include_input=False, include_url=False):
        loc = [str(part) for part in err["loc"] if part != "__root__"]
        field = ".".join([prefix, *loc] if prefix else loc) or (prefix or "input")
        message = err["msg"].removeprefix("Value error, ")
        found.append((field, message))
    return InvalidInput(found)


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
        if value not in METRICS:
            raise ValueError("must be one of " + ", ".join(METRICS))
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
        import uuid

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
        raise _errors(error) from None


# --- channels -------------------------------------------------------------------------------


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s):// URL")
    return value


class SlackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    url: str = Field(min_length=1, max_length=2000)
    _url = field_validator("url")(classmethod(lambda cls, v: _http_url(v)))


class PagerDutyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    routing_key: str = Field(min_length=1, max_length=200)
    url: str = Field(default=PAGERDUTY_URL, max_length=2000)
    _url = field_validator("url")(classmethod(lambda cls, v: _http_url(v)))


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    url: str = Field(min_length=1, max_length=2000)
    headers: dict[str, str] = Field(default_factory=dict, max_length=20)
    _url = field_validator("url")(classmethod(lambda cls, v: _http_url(v)))


class EmailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True)
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(default=587, gt=0, lt=65536)
    starttls: bool = True
    username: str | None = None
    password: str | None = None
    from_: str = Field(alias="from", min_length=3, max_length=320)
    to: list[str] = Field(min_length=1, max_length=50)

    @field_validator("to", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in re.split(r"[,\s;]+", value) if part.strip()]
        return value

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not _EMAIL.match(address):
                raise ValueError("must be email addresses")
        return value

    @field_validator("from_")
    @classmethod
    def _from(cls, value: str) -> str:
        address = value.rsplit("<", 1)[-1].rstrip(">").strip()
        if not _EMAIL.match(address):
            raise ValueError("must be an email address")
        return value

    @field_validator("username", "password")
    @classmethod
    def _empty(cls, value: str | None) -> str | None:
        return value or None


CONFIGS: dict[str, type[BaseModel]] = {
    "slack": SlackConfig,
    "pagerduty": PagerDutyConfig,
    "webhook": WebhookConfig,
    "email": EmailConfig,
}
# Config fields that are secrets: shown masked, never echoed, kept when sent back masked.
SECRETS: dict[str, tuple[str, ...]] = {
    "slack": ("url",),
    "pagerduty": ("routing_key",),
    "webhook": ("url",),
    "email": ("password",),
}


class ChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=1, max_length=100)
    kind: Literal["slack", "pagerduty", "webhook", "email"]
    config: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True


CHANNEL_FIELDS = tuple(ChannelIn.model_fields)


def parse_channel(data: Mapping[str, Any], existing: Mapping[str, Any] | None = None) -> ChannelIn:
    """Validate a channel. With ``existing`` (an update), secrets left empty or sent back in
    their masked form keep their stored value."""
    try:
        channel = ChannelIn.model_validate(dict(data))
    except ValidationError as error:
        raise _errors(error) from None
    config = dict(channel.config)
    if existing is not None and existing.get("kind") == channel.kind:
        config = keep_secrets(channel.kind, existing.get("config") or {}, config)
    try:
        parsed = CONFIGS[channel.kind].model_validate(config)
    except ValidationError as error:
        raise _errors(error, "config") from None
    normalized = parsed.model_dump(by_alias=True, exclude_none=True)
    return channel.model_copy(update={"config": normalized})


def keep_secrets(kind: str, old: Mapping[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(new)
    for name in SECRETS[kind]:
        stored = old.get(name)
        if stored and (not out.get(name) or out.get(name) == mask(kind, name, stored)):
            out[name] = stored
    if kind == "webhook" and isinstance(out.get("headers"), dict):
        stored_headers = old.get("headers") or {}
        out["headers"] = {
            key: stored_headers[key] if value in ("", MASK) and key in stored_headers else value
            for key, value in out["headers"].items()
        }
    return out


def mask(kind: str, name: str, value: Any) -> Any:
    if value in (None, ""):
        return value
    if kind == "email" and name == "password":
        return MASK
    text = str(value)
    parts = urlsplit(text)
    tail = text[-4:] if len(text) >= 12 else ""
    if parts.scheme in ("http", "https") and parts.hostname:
        return f"{parts.scheme}://{parts.hostname}/…{tail}"
    return f"…{tail}" if tail else MASK


def masked_config(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(config)
    for name in SECRETS.get(kind, ()):
        if name in out:
            out[name] = mask(kind, name, out[name])
    if isinstance(out.get("headers"), dict):
        out["headers"] = dict.fromkeys(out["headers"], MASK)
    return out


def public_channel(row: Mapping[str, Any]) -> dict[str, Any]:
    """A channel as pages and API responses show it: every secret masked."""
    return {
        "id": row["id"],
        "name": row["name"],
        "kind": row["kind"],
        "config": masked_config(row["kind"], row.get("config") or {}),
        "enabled": row.get("enabled", True),
        "created_at": row.get("created_at"),
        "updated_at": row.get("updated_at"),
    }


__all__ = [
    "CHANNEL_FIELDS",
    "KINDS",
    "NO_DATA",
    "OPS",
    "RULE_FIELDS",
    "SEVERITIES",
    "ChannelIn",
    "InvalidInput",
    "RuleIn",
    "parse_channel",
    "parse_rule",
    "public_channel",
]
