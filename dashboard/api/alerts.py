"""The alerts JSON API (bearer ``API_TOKEN``, or a logged-in session with CSRF):

- ``GET/POST /api/v1/channels``, ``GET/PATCH/DELETE /api/v1/channels/<id>``,
  ``POST /api/v1/channels/<id>/test``: ``{"name", "kind", "config", "enabled"}``; kinds
  ``slack`` and ``webhook`` take ``config.url``, ``pagerduty`` ``config.routing_key`` (and
  an optional ``config.url``), ``email`` ``config.host/port/starttls/username/password/
  from/to``. Secrets come back masked; sending a masked value back keeps the stored one.
- ``GET/POST /api/v1/alert-rules``, ``GET/PATCH/DELETE /api/v1/alert-rules/<id>``:
  ``{"name", "metric", "op", "threshold", "clear_threshold", "for_seconds",
  "keep_firing_seconds", "no_data", "severity", "channel_ids", "repeat_seconds",
  "send_resolved", "enabled"}``; rules come back with their ``state`` and current ``value``.
- ``GET /api/v1/alerts``: what is firing now.

Invalid input is a 400 ``{"error", "field", "errors": {field: message}}``; PATCH changes
only the fields given. Every change is written to the audit log.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from auditq.alerts.models import InvalidInput
from auditq.alerts.service import NotFound
from auditq.stores import StoreError
from dashboard.access import bearer
from dashboard.audit import record
from dashboard.resources import alert_service as service

bp = Blueprint("api_alerts", __name__, url_prefix="/api/v1")

api = bearer("api_token", session_ok=True)


@bp.errorhandler(InvalidInput)
def invalid(error: InvalidInput) -> ResponseReturnValue:
    return jsonify({"error": str(error), "field": error.field, "errors": error.as_dict()}), 400


@bp.errorhandler(NotFound)
def not_found(error: NotFound) -> ResponseReturnValue:
    return jsonify({"error": str(error)}), 404


@bp.errorhandler(StoreError)
def store_down(error: StoreError) -> ResponseReturnValue:
    return jsonify({"error": f"store unavailable: {error}"}), 503


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise InvalidInput([("body", "must be a JSON object")])
    return data


def _audit(action: str, target_type: str, target_id: str, **metadata: Any) -> None:
    record(
        action, target_type=target_type, target_id=target_id, metadata={"via": "api", **metadata}
    )


# --- channels ---------------------------------------------------------------------------------


@bp.route("/channels")
@api
def list_channels() -> ResponseReturnValue:
    return jsonify({"channels": service().list_channels()})


@bp.route("/channels", methods=["POST"])
@api
def create_channel() -> ResponseReturnValue:
    channel = service().create_channel(_body())
    _audit("auditq.alert_channel.create", "alert_channel", channel["id"], channel=channel)
    return jsonify(channel), 201


@bp.route("/channels/<channel_id>")
@api
def get_channel(channel_id: str) -> ResponseReturnValue:
    return jsonify(service().get_channel(channel_id))


@bp.route("/channels/<channel_id>", methods=["PATCH"])
@api
def update_channel(channel_id: str) -> ResponseReturnValue:
    channel = service().update_channel(channel_id, _body())
    _audit("auditq.alert_channel.update", "alert_channel", channel_id, channel=channel)
    return jsonify(channel)


@bp.route("/channels/<channel_id>", methods=["DELETE"])
@api
def delete_channel(channel_id: str) -> ResponseReturnValue:
    channel = service().delete_channel(channel_id)
    _audit("auditq.alert_channel.delete", "alert_channel", channel_id, channel=channel)
    return "", 204


@bp.route("/channels/<channel_id>/test", methods=["POST"])
@api
def test_channel(channel_id: str) -> ResponseReturnValue:
    result = service().send_test(channel_id)
    _audit("auditq.alert_channel.test", "alert_channel", channel_id, ok=result.ok)
    return jsonify({"ok": result.ok, "detail": result.detail}), 200 if result.ok else 502


# --- rules ------------------------------------------------------------------------------------


def _with_state(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    overview = {r["id"]: r for r in service().rules_overview()}
    return [
        {**rule, **{k: overview.get(rule["id"], {}).get(k) for k in ("state", "value")}}
        for rule in rules
    ]


@bp.route("/alert-rules")
@api
def list_rules() -> ResponseReturnValue:
    return jsonify({"rules": service().rules_overview()})


@bp.route("/alert-rules", methods=["POST"])
@api
def create_rule() -> ResponseReturnValue:
    rule = service().create_rule(_body())
    _audit("auditq.alert_rule.create", "alert_rule", rule["id"], rule=rule)
    return jsonify(rule), 201


@bp.route("/alert-rules/<rule_id>")
@api
def get_rule(rule_id: str) -> ResponseReturnValue:
    return jsonify(_with_state([service().get_rule(rule_id)])[0])


@bp.route("/alert-rules/<rule_id>", methods=["PATCH"])
@api
def update_rule(rule_id: str) -> ResponseReturnValue:
    body = _body()
    svc = service()
    before = svc.get_rule(rule_id)
    rule = svc.update_rule(rule_id, body)
    changes = {
        k: {"from": before.get(k), "to": rule.get(k)} for k in body if before.get(k) != rule.get(k)
    }
    _audit("auditq.alert_rule.update", "alert_rule", rule_id, name=rule["name"], changes=changes)
    return jsonify(rule)


@bp.route("/alert-rules/<rule_id>", methods=["DELETE"])
@api
def delete_rule(rule_id: str) -> ResponseReturnValue:
    rule = service().delete_rule(rule_id)
    _audit("auditq.alert_rule.delete", "alert_rule", rule_id, rule=rule)
    return "", 204


@bp.route("/alerts")
@api
def firing() -> ResponseReturnValue:
    return jsonify({"alerts": service().firing()})
