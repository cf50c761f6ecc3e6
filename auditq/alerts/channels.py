"""The channel registry: for each kind, its config schema, secret fields, label, form fields
and sender, in one place. Adding a kind is one ``ChannelKind`` here (and its sender in
``notifiers``); the models, pages, API, masking and delivery all read it from here.

``parse_channel`` validates a channel for the forms and the JSON API (``InvalidInput``
names each bad field, never echoing a secret); ``public_channel`` is a channel as pages
and API responses show it, secrets masked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from auditq.alerts import egress, notifiers
from auditq.alerts.models import errors_of, one_of
from auditq.alerts.notifiers import PAGERDUTY_URL, Link, Outcome

_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")
MASK = "••••••••"


def _allow_private(info: ValidationInfo) -> bool:
    return bool((info.context or {}).get("allow_private"))


def _http_url(value: str, info: ValidationInfo) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s):// URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        egress.check_host(parts.hostname, port, _allow_private(info), strict=False)
    except egress.Refused as error:
        raise ValueError(str(error)) from None
    return value


class SlackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    url: str = Field(min_length=1, max_length=2000)
    _url = field_validator("url")(_http_url)


class PagerDutyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    routing_key: str = Field(min_length=1, max_length=200)
    url: str = Field(default=PAGERDUTY_URL, max_length=2000)
    _url = field_validator("url")(_http_url)


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    url: str = Field(min_length=1, max_length=2000)
    headers: dict[str, str] = Field(default_factory=dict, max_length=20)
    _url = field_validator("url")(_http_url)


class EmailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True)
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(default=587, gt=0, lt=65536)
    starttls: bool = True
    username: str | None = None
    password: str | None = None
    from_: str = Field(alias="from", min_length=3, max_length=320)
    to: list[str] = Field(min_length=1, max_length=50)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str, info: ValidationInfo) -> str:
        try:
            egress.check_host(value, 25, _allow_private(info), strict=False)
        except egress.Refused as error:
            raise ValueError(str(error)) from None
        return value

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


Sender = Callable[[Mapping[str, Any], Mapping[str, Any], Link], Outcome]


@dataclass(frozen=True)
class ChannelKind:
    kind: str
    label: str
    config: type[BaseModel]
    # Config fields that are secrets: shown masked, never echoed, kept when sent back masked.
    secrets: tuple[str, ...]
    # The form's fields: (config key, label, input type).
    form: tuple[tuple[str, str, str], ...]
    send: Sender


KINDS: dict[str, ChannelKind] = {
    k.kind: k
    for k in (
        ChannelKind(
            "slack",
            "Slack",
            SlackConfig,
            ("url",),
            (("url", "Incoming webhook URL", "url"),),
            notifiers.send_slack,
        ),
        ChannelKind(
            "pagerduty",
            "PagerDuty",
            PagerDutyConfig,
            ("routing_key",),
            (
                ("routing_key", "Integration (routing) key", "text"),
                ("url", "Events API URL (leave empty for PagerDuty's)", "url"),
            ),
            notifiers.send_pagerduty,
        ),
        ChannelKind(
            "webhook",
            "Webhook",
            WebhookConfig,
            ("url",),
            (("url", "URL (receives Alertmanager's webhook JSON)", "url"),),
            notifiers.send_webhook,
        ),
        ChannelKind(
            "email",
            "Email",
            EmailConfig,
            ("password",),
            (
                ("host", "SMTP host", "text"),
                ("port", "Port", "number"),
                ("starttls", "STARTTLS", "checkbox"),
                ("username", "Username", "text"),
                ("password", "Password", "password"),
                ("from", "From", "text"),
                ("to", "To (comma-separated)", "text"),
            ),
            notifiers.send_email,
        ),
    )
}


def secrets_of(kind: str) -> tuple[str, ...]:
    known = KINDS.get(kind)
    return known.secrets if known else ()


def send(channel: Mapping[str, Any], message: Mapping[str, Any], link: Link) -> Outcome:
    """One attempt to deliver ``message`` to ``channel`` (a row of alert_channels)."""
    known = KINDS.get(channel["kind"])
    if known is None:
        return Outcome(ok=False, detail=f"unknown channel kind {channel['kind']!r}")
    return known.send({**channel, "config": channel.get("config") or {}}, message, link)


# --- input --------------------------------------------------------------------------------------


class ChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=1, max_length=100)
    kind: str
    config: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        return one_of(value, KINDS)


CHANNEL_FIELDS = tuple(ChannelIn.model_fields)


def parse_channel(
    data: Mapping[str, Any],
    existing: Mapping[str, Any] | None = None,
    *,
    allow_private: bool = False,
) -> ChannelIn:
    """Validate a channel. With ``existing`` (an update), secrets left empty or sent back in
    their masked form keep their stored value. Private destinations are refused unless
    ``allow_private`` (AUDITQ_ALERT_ALLOW_PRIVATE)."""
    try:
        channel = ChannelIn.model_validate(dict(data))
    except ValidationError as error:
        raise errors_of(error) from None
    config = dict(channel.config)
    if existing is not None and existing.get("kind") == channel.kind:
        config = keep_secrets(channel.kind, existing.get("config") or {}, config)
    try:
        parsed = KINDS[channel.kind].config.model_validate(
            config, context={"allow_private": allow_private}
        )
    except ValidationError as error:
        raise errors_of(error, "config") from None
    normalized = parsed.model_dump(by_alias=True, exclude_none=True)
    return channel.model_copy(update={"config": normalized})


def keep_secrets(kind: str, old: Mapping[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(new)
    for name in secrets_of(kind):
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
    for name in secrets_of(kind):
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
