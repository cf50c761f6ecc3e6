"""Notifiers: turn an alert message into each channel's real wire format and send it once.

- ``slack``: an incoming webhook, ``{"text": ...}``.
- ``pagerduty``: Events API v2 (``routing_key``, ``event_action`` trigger/resolve,
  ``dedup_key`` = the rule's fingerprint, so trigger and resolve meet in one incident).
  ``url`` defaults to PagerDuty's endpoint and may point elsewhere (a proxy, a test).
- ``webhook``: Alertmanager's webhook JSON (version 4), which most on-call tools accept.
- ``email``: SMTP with smtplib (STARTTLS by default, implicit TLS on port 465), subject
  ``[FIRING] <rule>`` or ``[RESOLVED] <rule>``.

Each ``send_<kind>`` makes exactly one attempt and classifies the outcome; the channel
registry (``auditq.alerts.channels``) picks the sender, retrying is the outbox's job
(``auditq.alerts.outbox``). Outcome details are a status and a short reason: never a
channel's secrets, never what the receiver answered. Destinations go through ``egress``.
"""

from __future__ import annotations

import email.utils
import smtplib
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx

from auditq.alerts import egress

USER_AGENT = "auditq-alerts/1"
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt for an alert still firing


@dataclass(frozen=True)
class Outcome:
    ok: bool
    retryable: bool = False
    status: int | None = None  # HTTP status or SMTP reply code
    retry_after: float | None = None  # seconds, from a Retry-After header
    detail: str = ""


def rfc3339(epoch: float | None) -> str:
    if epoch is None:
        return _ZERO_TIME
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def title(message: Mapping[str, Any]) -> str:
    status = "RESOLVED" if message["status"] == "resolved" else "FIRING"
    test = "[TEST] " if message.get("kind") == "test" else ""
    return f"{test}[{status}] {message['rule_name']}"


def _value(value: Any) -> str:
    if value is None:
        return "no data"
    return f"{value:g}" if isinstance(value, float | int) else str(value)


def describe(message: Mapping[str, Any]) -> str:
    """One line: what is wrong, measured against what."""
    if message.get("summary"):  # a content rule says what happened itself
        return f"{message['summary']}; severity {message['severity']}"
    line = (
        f"{message['metric']} = {_value(message.get('value'))}"
        f" (rule: {message['metric']} {message['op']} {_value(message['threshold'])}"
    )
    if message.get("for_seconds"):
        line += f" for {message['for_seconds']}s"
    return line + f"; severity {message['severity']})"


# --- payloads -------------------------------------------------------------------------------


def slack_payload(message: Mapping[str, Any]) -> dict[str, Any]:
    icon = ":white_check_mark:" if message["status"] == "resolved" else ":rotating_light:"
    text = f"{icon} *{title(message)}*\n{describe(message)}"
    if message.get("starts_at"):
        text += f"\nSince {rfc3339(message['starts_at'])}"
    if message.get("dashboard_url"):
        text += f"\n<{message['dashboard_url']}|Open the dashboard>"
    return {"text": text}


def pagerduty_payload(config: Mapping[str, Any], message: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "routing_key": config["routing_key"],
        "event_action": "resolve" if message["status"] == "resolved" else "trigger",
        "dedup_key": message["fingerprint"],
    }
    if body["event_action"] == "trigger":
        body["payload"] = {
            "summary": f"{title(message)}: {describe(message)}"[:1024],
            "severity": message["severity"],
            "source": "auditq",
            "component": message["metric"],
            "class": "auditq-alert",
            "timestamp": rfc3339(message.get("starts_at") or message.get("at")),
            "custom_details": {
                "rule": message["rule_name"],
                "metric": message["metric"],
                "value": message.get("value"),
                "threshold": message["threshold"],
                "op": message["op"],
            },
        }
        body["client"] = "auditq"
        if message.get("dashboard_url"):
            body["client_url"] = message["dashboard_url"]
    return body


def webhook_payload(channel_name: str, message: Mapping[str, Any]) -> dict[str, Any]:
    """Alertmanager's webhook format (version 4), one alert per rule."""
    status = "resolved" if message["status"] == "resolved" else "firing"
    labels = {
        "alertname": message["rule_name"],
        "severity": message["severity"],
        "metric": message["metric"],
        "rule_id": str(message.get("rule_id") or ""),
        "service": "auditq",
    }
    if message.get("group_by"):  # event_rate: one alert per group value
        labels[message["group_by"]] = str(message["group"])
    if message.get("event"):  # event: the event it is about
        labels["event_id"] = str(message["event"]["id"])
        labels["action"] = str(message["event"]["action"])
    annotations = {
        "summary": title(message),
        "description": describe(message),
        "value": _value(message.get("value")),
        "threshold": f"{message['op']} {_value(message['threshold'])}",
    }
    url = message.get("event_url") or message.get("dashboard_url") or ""
    alert = {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(message.get("starts_at") or message.get("at")),
        "endsAt": rfc3339(message.get("ends_at")) if status == "resolved" else _ZERO_TIME,
        "generatorURL": url,
        "fingerprint": message["fingerprint"],
    }
    return {
        "version": "4",
        "groupKey": "{}:" + '{alertname="' + message["rule_name"].replace('"', '\\"') + '"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": channel_name,
        "groupLabels": {"alertname": labels["alertname"]},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": url,
        "alerts": [alert],
    }


def email_message(config: Mapping[str, Any], message: Mapping[str, Any]) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = title(message)
    mail["From"] = config["from"]
    mail["To"] = ", ".join(config["to"])
    mail["Date"] = email.utils.formatdate(localtime=False)
    mail["Message-ID"] = email.utils.make_msgid(domain="auditq")
    lines = [title(message), "", describe(message)]
    if message.get("starts_at"):
        lines.append(f"Since: {rfc3339(message['starts_at'])}")
    if message["status"] == "resolved" and message.get("ends_at"):
        lines.append(f"Resolved: {rfc3339(message['ends_at'])}")
    lines.append(f"Fingerprint: {message['fingerprint']}")
    if message.get("dashboard_url"):
        lines += ["", message["dashboard_url"]]
    mail.set_content("\n".join(lines) + "\n")
    return mail


# --- sending --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """How a notifier reaches its receiver (one per evaluator or test request)."""

    http: httpx.Client
    timeout: float
    allow_private: bool = False  # AUDITQ_ALERT_ALLOW_PRIVATE


def send_slack(channel: Mapping[str, Any], message: Mapping[str, Any], link: Link) -> Outcome:
    return _post(link, channel["config"]["url"], slack_payload(message))


def send_pagerduty(channel: Mapping[str, Any], message: Mapping[str, Any], link: Link) -> Outcome:
    config = channel["config"]
    return _post(link, config.get("url") or PAGERDUTY_URL, pagerduty_payload(config, message))


def send_webhook(channel: Mapping[str, Any], message: Mapping[str, Any], link: Link) -> Outcome:
    config = channel["config"]
    payload = webhook_payload(channel["name"], message)
    return _post(link, config["url"], payload, dict(config.get("headers") or {}))


def _post(
    link: Link, url: str, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> Outcome:
    # The receiver's body is never part of the outcome: the caller (the channel test, the
    # history page) would otherwise read whatever an internal address answers.
    try:
        target = egress.pin(url, link.allow_private)
    except egress.Refused as error:
        return Outcome(ok=False, detail=f"refused: {error}")
    sent_headers = {"User-Agent": USER_AGENT, **(headers or {}), **target.headers}
    try:
        response = link.http.post(
            target.url,
            json=payload,
            headers=sent_headers,
            timeout=link.timeout,
            extensions=target.extensions,
        )
    except httpx.TimeoutException:
        return Outcome(ok=False, retryable=True, detail="timed out")
    except httpx.TransportError as error:
        return Outcome(ok=False, retryable=True, detail=f"network error: {type(error).__name__}")
    status = response.status_code
    detail = f"HTTP {status} {response.reason_phrase}".strip()
    if 200 <= status < 300:
        return Outcome(ok=True, status=status, detail=detail)
    if status == 429 or status >= 500:
        return Outcome(
            ok=False,
            retryable=True,
            status=status,
            retry_after=retry_after(response.headers.get("Retry-After")),
            detail=detail,
        )
    return Outcome(ok=False, retryable=False, status=status, detail=detail)


def retry_after(header: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def send_email(channel: Mapping[str, Any], message: Mapping[str, Any], link: Link) -> Outcome:
    config, timeout = channel["config"], link.timeout
    mail = email_message(config, message)
    host, port = config["host"], int(config.get("port") or 587)
    try:
        egress.check_host(host, port, link.allow_private)
    except egress.Refused as error:
        return Outcome(ok=False, detail=f"refused: {error}")
    try:
        if port == 465:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                host, port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
        with smtp:
            if port != 465 and config.get("starttls", True):
                smtp.starttls(context=ssl.create_default_context())
            if config.get("username"):
                smtp.login(config["username"], config.get("password") or "")
            refused = smtp.send_message(mail)
    except smtplib.SMTPRecipientsRefused as error:
        codes = [code for code, _ in error.recipients.values()]
        temporary = any(400 <= code < 500 for code in codes)
        return Outcome(
            ok=False, retryable=temporary, status=codes[0] if codes else None, detail="refused"
        )
    except smtplib.SMTPResponseException as error:
        code = error.smtp_code
        return Outcome(
            ok=False,
            retryable=400 <= code < 500 or code < 0,
            status=code,
            detail=f"SMTP {code}",  # the server's text stays out, as an HTTP body does
        )
    except (smtplib.SMTPException, OSError) as error:
        return Outcome(ok=False, retryable=True, detail=f"SMTP error: {type(error).__name__}")
    if refused:
        return Outcome(ok=True, status=250, detail=f"sent; refused: {', '.join(refused)}")
    return Outcome(ok=True, status=250, detail="sent")
