"""The navigation bar: one list, in the order it is shown.

The base layout (``templates/base.html``) renders ``NAV`` and marks the item whose
blueprint serves the request. A page is in the bar by being listed here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NavItem:
    label: str
    endpoint: str  # e.g. "overview.index"

    @property
    def blueprint(self) -> str:
        return self.endpoint.split(".", 1)[0]


NAV = (
    NavItem("Overview", "overview.index"),
    NavItem("Workers", "workers.index"),
    NavItem("Alerts", "alerts.index"),
    NavItem("Dead letters", "dead_letters.index"),
    NavItem("Integrity", "integrity.index"),
    NavItem("Retention", "retention.index"),
    NavItem("Explorer", "explorer.index"),
    NavItem("Privacy", "privacy.index"),
    NavItem("Settings", "settings.index"),
)
