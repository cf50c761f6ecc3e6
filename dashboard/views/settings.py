"""Settings: the effective configuration, every field with its environment variable.

Secrets show only whether they are set. URLs that can carry a password (REDIS_URL) show it
masked; DATABASE_URL is a secret as a whole.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template
from pydantic import SecretStr

from auditq.config import Settings, env_name
from auditq.urls import hide_password
from dashboard.resources import resources

bp = Blueprint("settings", __name__)


# What a hidden password looks like on the page (the terminal's "***" would read as text).
MASKED = "••••••"


def rows(settings: Settings) -> list[dict[str, Any]]:
    out = []
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        secret = isinstance(value, SecretStr) or field.annotation in (SecretStr, SecretStr | None)
        if secret:
            shown = "set" if value is not None and value.get_secret_value() else "not set"
        elif isinstance(value, str) and "://" in value:
            shown = hide_password(value, MASKED)
        else:
            shown = "" if value is None else str(value)
        out.append(
            {
                "name": name,
                "env": env_name(name),
                "value": shown,
                "secret": secret,
                "default": value == field.default,
                "description": field.description or "",
            }
        )
    return out


@bp.route("/settings")
def index() -> str:
    settings = resources().settings
    return render_template(
        "settings.html", rows=rows(settings), store_kind=settings.store_kind or "none"
    )
