"""The navigation bar: each page blueprint module declares ``NAV = NavItem(...)``.

``create_app`` collects them in ``BLUEPRINTS`` order and sorts by ``order``; the base
layout (``templates/base.html``) renders them and marks the current one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NavItem:
    label: str
    endpoint: str  # e.g. "overview.index"
    order: int = 50  # overview 10, workers 20, alerts 25 (reserved), dead letters 30, ...

    @property
    def blueprint(self) -> str:
        return self.endpoint.split(".", 1)[0]
