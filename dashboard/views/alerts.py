"""Alerts: rules (with each one's current value and state), channels (secrets masked, a
"send test notification" button), silences and history.

Forms post to the same models the JSON API uses (``auditq.alerts.models``). Changes are
admin-only POSTs (the access hook checks role and CSRF), and each is written to the audit
log (``auditq.alert_rule.create`` and so on). The overview's firing-alerts summary gets its
data from the context processor at the bottom.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue

from auditq.alerts.channels import KINDS, secrets_of
from auditq.alerts.content import GROUP_BY
from auditq.alerts.metrics import METRICS
from auditq.alerts.models import RULE_FIELDS, InvalidInput
from auditq.alerts.rules import NO_DATA, OPS, SEVERITIES
from auditq.alerts.service import NotFound
from auditq.stores import StoreError
from dashboard.access import admin_only
from dashboard.audit import record
from dashboard.resources import alert_service as service

log = logging.getLogger(__name__)

bp = Blueprint("alerts", __name__, url_prefix="/alerts")

SILENCE_DURATIONS = [
    (30, "30 minutes"),
    (60, "1 hour"),
    (240, "4 hours"),
    (1440, "1 day"),
    (10080, "1 week"),
]


@bp.errorhandler(StoreError)
def store_down(error: StoreError) -> ResponseReturnValue:
    log.warning("alerts page: store error: %s", error)
    return render_template(
        "error.html", status=503, message=f"The store is unavailable: {error}"
    ), 503


def _context(**extra: Any) -> dict[str, Any]:
    return {
        "metrics": METRICS,
        "ops": OPS,
        "severities": SEVERITIES,
        "no_data_choices": NO_DATA,
        "kinds": KINDS,
        "now": time.time(),
        **extra,
    }


# --- rules ------------------------------------------------------------------------------------


@bp.route("/")
def index() -> str:
    svc = service()
    rules = svc.rules_overview()
    channels = {c["id"]: c for c in svc.list_channels()}
    return render_template(
        "alerts/rules.html",
        **_context(
            rules=rules,
            channels=channels,
            status=svc.evaluator_status(),
            tab="rules",
            any_without_channels=any(not r["channel_ids"] for r in rules),
        ),
    )


def _rule_form_values(form) -> dict[str, Any]:
    """The form as the rule model's input (numbers stay text: the model parses them). The
    form shows only its kind's fields; the others are left out (the model's defaults)."""
    values: dict[str, Any] = {
        name: form.get(name, "").strip() for name in RULE_FIELDS if name in form
    }
    for name in ("for_seconds", "keep_firing_seconds", "repeat_seconds"):
        if name in values:
            values[name] = values[name] or "0"
    for name in ("metric", "op", "threshold", "clear_threshold", "match", "window_seconds"):
        if name in values:
            values[name] = values[name] or None
    values["kind"] = values.get("kind") or "metric"
    if values.get("match"):
        # A JSON object typed into the form; text that is not JSON is refused by the model.
        with contextlib.suppress(ValueError):
            values["match"] = json.loads(values["match"])
    values["channel_ids"] = form.getlist("channel_ids")
    values["send_resolved"] = _yes(form, "send_resolved")
    values["enabled"] = _yes(form, "enabled")
    return values


_RULE_DEFAULTS = {
    "name": "",
    "kind": "metric",
    "match": "",
    "group_by": "ip",
    "window_seconds": 300,
    "metric": "queue_length",
    "op": ">",
    "threshold": "",
    "clear_threshold": "",
    "for_seconds": 0,
    "keep_firing_seconds": 0,
    "no_data": "keep",
    "severity": "warning",
    "channel_ids": [],
    "repeat_seconds": 0,
    "send_resolved": True,
    "enabled": True,
}


def _render_rule_form(values, errors, rule_id=None, status=200) -> ResponseReturnValue:
    svc = service()
    values = dict(values)
    if isinstance(values.get("match"), dict):  # shown as the JSON it is typed in
        values["match"] = json.dumps(values["match"], ensure_ascii=False)
    return render_template(
        "alerts/rule_form.html",
        **_context(
            values=values,
            errors=errors,
            rule_id=rule_id,
            channels=svc.list_channels(),
            tab="rules",
            rule_kinds=RULE_KINDS,
            group_by_choices=GROUP_BY,
        ),
    ), status


# The form shows the fields of one kind; a new rule's kind is picked by a link (no script).
RULE_KINDS = {
    "metric": "auditq's metrics",
    "event": "each matching event",
    "event_rate": "matching events per source",
    "seal_head": "each new seal head (a copy off-box)",
}


@bp.route("/rules/new")
@admin_only
def new_rule() -> ResponseReturnValue:
    values = dict(_RULE_DEFAULTS)
    if request.args.get("metric") in METRICS:
        values["metric"] = request.args["metric"]
    if request.args.get("kind") in RULE_KINDS:
        values["kind"] = request.args["kind"]
    return _render_rule_form(values, {})


@bp.route("/rules/preview")
@admin_only
def preview_rule() -> ResponseReturnValue:
    """The form's "preview: N events matched in the last hour" line (htmx, on change)."""
    try:
        match = json.loads(request.args.get("match") or "null")
    except ValueError:
        match = request.args.get("match")
    try:
        count = service().preview(match)
    except InvalidInput as error:
        return render_template("alerts/_preview.html", error=error.as_dict().get("match"))
    return render_template("alerts/_preview.html", count=count)


@bp.route("/rules/new", methods=["POST"])
def create_rule() -> ResponseReturnValue:
    values = _rule_form_values(request.form)
    try:
        rule = service().create_rule(values)
    except InvalidInput as error:
        return _render_rule_form(values, error.as_dict(), status=400)
    record(
        "auditq.alert_rule.create",
        target_type="alert_rule",
        target_id=rule["id"],
        metadata={"rule": _loggable(rule)},
    )
    flash(f"Rule “{rule['name']}” created.", "ok")
    return redirect(url_for(".index"), code=303)


@bp.route("/rules/<rule_id>/edit")
@admin_only
def edit_rule(rule_id: str) -> ResponseReturnValue:
    try:
        rule = service().get_rule(rule_id)
    except NotFound:
        abort(404, "No such rule.")
    values = {name: rule[name] for name in RULE_FIELDS}
    if values["clear_threshold"] is None:
        values["clear_threshold"] = ""
    return _render_rule_form(values, {}, rule_id)


@bp.route("/rules/<rule_id>/edit", methods=["POST"])
def update_rule(rule_id: str) -> ResponseReturnValue:
    svc = service()
    values = _rule_form_values(request.form)
    try:
        before = svc.get_rule(rule_id)
        rule = svc.update_rule(rule_id, values)
    except NotFound:
        abort(404, "No such rule.")
    except InvalidInput as error:
        return _render_rule_form(values, error.as_dict(), rule_id, status=400)
    record(
        "auditq.alert_rule.update",
        target_type="alert_rule",
        target_id=rule_id,
        metadata={"changes": _changes(before, rule), "name": rule["name"]},
    )
    flash(f"Rule “{rule['name']}” saved.", "ok")
    return redirect(url_for(".index"), code=303)


@bp.route("/rules/<rule_id>/delete", methods=["POST"])
def delete_rule(rule_id: str) -> ResponseReturnValue:
    try:
        rule = service().delete_rule(rule_id)
    except NotFound:
        flash("That rule is gone already.", "warning")
        return redirect(url_for(".index"), code=303)
    record(
        "auditq.alert_rule.delete",
        target_type="alert_rule",
        target_id=rule_id,
        metadata={"rule": _loggable(rule)},
    )
    flash(f"Rule “{rule['name']}” deleted.", "ok")
    return redirect(url_for(".index"), code=303)


# --- channels ---------------------------------------------------------------------------------


@bp.route("/channels")
def channels() -> str:
    svc = service()
    rules = svc.list_rules()
    used_by = {
        c["id"]: [r["name"] for r in rules if c["id"] in r["channel_ids"]]
        for c in svc.list_channels()
    }
    return render_template(
        "alerts/channels.html",
        **_context(channels=svc.list_channels(), used_by=used_by, tab="channels"),
    )


def _channel_form_values(form, kind: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for key, _label, kind_of_input in KINDS[kind].form if kind in KINDS else ():
        if kind_of_input == "checkbox":
            config[key] = _yes(form, f"config.{key}")
        else:
            value = form.get(f"config.{key}", "").strip()
            if value:
                config[key] = value
    return {
        "name": form.get("name", "").strip(),
        "kind": kind,
        "config": config,
        "enabled": _yes(form, "enabled"),
    }


def _render_channel_form(values, errors, channel_id=None, stored=None, status=200):
    masked = (stored or {}).get("config", {})
    return render_template(
        "alerts/channel_form.html",
        **_context(
            values=values,
            errors=errors,
            channel_id=channel_id,
            masked=masked,
            secrets=secrets_of(values["kind"]),
            tab="channels",
        ),
    ), status


@bp.route("/channels/new")
@admin_only
def new_channel() -> ResponseReturnValue:
    kind = request.args.get("kind", "slack")
    if kind not in KINDS:
        kind = "slack"
    config: dict[str, Any] = {"starttls": True, "port": 587} if kind == "email" else {}
    return _render_channel_form({"name": "", "kind": kind, "config": config, "enabled": True}, {})


@bp.route("/channels/new", methods=["POST"])
def create_channel() -> ResponseReturnValue:
    kind = request.form.get("kind", "")
    if kind not in KINDS:
        abort(400, "Unknown channel kind.")
    values = _channel_form_values(request.form, kind)
    try:
        channel = service().create_channel(values)
    except InvalidInput as error:
        return _render_channel_form(_without_secrets(values), error.as_dict(), status=400)
    record(
        "auditq.alert_channel.create",
        target_type="alert_channel",
        target_id=channel["id"],
        metadata={"channel": channel},
    )
    flash(f"Channel “{channel['name']}” added. Send it a test notification to check it.", "ok")
    return redirect(url_for(".channels"), code=303)


@bp.route("/channels/<channel_id>/edit")
@admin_only
def edit_channel(channel_id: str) -> ResponseReturnValue:
    try:
        channel = service().get_channel(channel_id)  # masked
    except NotFound:
        abort(404, "No such channel.")
    return _render_channel_form(_without_secrets(channel), {}, channel_id, channel)


@bp.route("/channels/<channel_id>/edit", methods=["POST"])
def update_channel(channel_id: str) -> ResponseReturnValue:
    svc = service()
    try:
        stored = svc.get_channel(channel_id)
    except NotFound:
        abort(404, "No such channel.")
    values = _channel_form_values(request.form, stored["kind"])
    try:
        # The form sends the whole config; secret fields left empty keep their stored values.
        channel = svc.update_channel(channel_id, values, replace_config=True)
    except InvalidInput as error:
        return _render_channel_form(
            _without_secrets(values), error.as_dict(), channel_id, stored, status=400
        )
    record(
        "auditq.alert_channel.update",
        target_type="alert_channel",
        target_id=channel_id,
        metadata={"channel": channel},
    )
    flash(f"Channel “{channel['name']}” saved.", "ok")
    return redirect(url_for(".channels"), code=303)


@bp.route("/channels/<channel_id>/delete", methods=["POST"])
def delete_channel(channel_id: str) -> ResponseReturnValue:
    try:
        channel = service().delete_channel(channel_id)
    except NotFound:
        flash("That channel is gone already.", "warning")
        return redirect(url_for(".channels"), code=303)
    record(
        "auditq.alert_channel.delete",
        target_type="alert_channel",
        target_id=channel_id,
        metadata={"channel": channel},
    )
    flash(f"Channel “{channel['name']}” deleted (and removed from its rules).", "ok")
    return redirect(url_for(".channels"), code=303)


@bp.route("/channels/<channel_id>/test", methods=["POST"])
def test_channel(channel_id: str) -> ResponseReturnValue:
    try:
        result = service().send_test(channel_id)
        channel = service().get_channel(channel_id)
    except NotFound:
        abort(404, "No such channel.")
    record(
        "auditq.alert_channel.test",
        target_type="alert_channel",
        target_id=channel_id,
        metadata={"ok": result.ok, "detail": result.detail},
        outcome="success" if result.ok else "failure",
    )
    if result.ok:
        flash(f"Test notification sent to “{channel['name']}” ({result.detail}).", "ok")
    else:
        flash(f"Test notification to “{channel['name']}” failed: {result.detail}", "error")
    return redirect(url_for(".channels"), code=303)


# --- silences ---------------------------------------------------------------------------------


@bp.route("/silences")
def silences() -> str:
    svc = service()
    now = time.time()
    return render_template(
        "alerts/silences.html",
        **_context(
            silences=svc.list_silences(now, include_expired=True),
            rules=svc.list_rules(),
            durations=SILENCE_DURATIONS,
            selected=request.args.get("rule_id", ""),
            errors={},
            tab="silences",
            now=now,
        ),
    )


@bp.route("/silences", methods=["POST"])
def create_silence() -> ResponseReturnValue:
    svc = service()
    rule_id = request.form.get("rule_id", "")
    comment = request.form.get("comment", "").strip()
    try:
        minutes = int(request.form.get("minutes", ""))
        if not 1 <= minutes <= 90 * 24 * 60:
            raise ValueError
    except ValueError:
        flash("Duration: choose how long the silence lasts.", "error")
        return redirect(url_for(".silences", rule_id=rule_id), code=303)
    now = time.time()
    try:
        silence = svc.create_silence(rule_id, now, now + minutes * 60, comment, created_by=_actor())
    except NotFound:
        flash("Rule: choose a rule to silence.", "error")
        return redirect(url_for(".silences"), code=303)
    except InvalidInput as error:
        flash(str(error), "error")
        return redirect(url_for(".silences", rule_id=rule_id), code=303)
    record(
        "auditq.alert_silence.create",
        target_type="alert_rule",
        target_id=rule_id,
        metadata={"silence_id": silence["id"], "minutes": minutes, "comment": comment},
    )
    flash(f"Silenced for {minutes} minutes: notifications stop, evaluation goes on.", "ok")
    return redirect(url_for(".silences"), code=303)


@bp.route("/silences/<silence_id>/end", methods=["POST"])
def end_silence(silence_id: str) -> ResponseReturnValue:
    try:
        silence = service().end_silence(silence_id)
    except NotFound:
        abort(404, "No such silence.")
    record(
        "auditq.alert_silence.end",
        target_type="alert_rule",
        target_id=silence["rule_id"],
        metadata={"silence_id": silence_id},
    )
    flash("Silence ended.", "ok")
    return redirect(url_for(".silences"), code=303)


# --- history ----------------------------------------------------------------------------------


@bp.route("/history")
def history() -> str:
    rule_id = request.args.get("rule_id") or None
    svc = service()
    return render_template(
        "alerts/history.html",
        **_context(rows=svc.history(300, rule_id=rule_id), rule_id=rule_id, tab="history"),
    )


# --- the overview's summary -------------------------------------------------------------------


@bp.app_context_processor
def firing_alerts_context() -> dict[str, Any]:
    def firing_alerts() -> dict[str, Any]:
        """Called by partials/alerts_summary.html only, so other pages pay nothing."""
        try:
            return {"alerts": service().firing(), "error": None}
        except StoreError as error:
            return {"alerts": [], "error": str(error)}
        except Exception as error:  # the overview must render whatever alerts do
            log.warning("firing alerts unavailable: %s", type(error).__name__)
            return {"alerts": [], "error": "alerts unavailable"}

    return {"firing_alerts": firing_alerts}


# --- helpers ----------------------------------------------------------------------------------


def _yes(form, name: str) -> bool:
    """A yes/no select (1/0), or a checkbox (present or not)."""
    return form.get(name, "0").strip().lower() in ("1", "yes", "true", "on")


def _without_secrets(channel: dict[str, Any]) -> dict[str, Any]:
    """Secret inputs are never filled in (nor echoed back after a failed submit)."""
    kind = channel["kind"]
    config = {k: v for k, v in (channel.get("config") or {}).items() if k not in secrets_of(kind)}
    return {**channel, "config": config}


def _loggable(rule: dict[str, Any]) -> dict[str, Any]:
    return {name: rule.get(name) for name in RULE_FIELDS}


def _changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {"from": before.get(name), "to": after.get(name)}
        for name in RULE_FIELDS
        if before.get(name) != after.get(name)
    }


def _actor() -> str:
    from flask import g

    return getattr(g, "role", None) or "unknown"
