"""URLs fit to show (auditq/urls.py): dev's banner and the settings page hide passwords."""

from __future__ import annotations

import pytest

from auditq.urls import hide_password


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://postgres@127.0.0.1:5432/postgres", None),
        (
            "postgresql://u:secret@db.example.com:6543/postgres",
            "postgresql://u:***@db.example.com:6543/postgres",
        ),
        ("rediss://:pw@redis.example.com:6380/0", "rediss://:***@redis.example.com:6380/0"),
        ("redis://u:pw@[::1]:6379/0", "redis://u:***@[::1]:6379/0"),
    ],
)
def test_printed_urls_hide_passwords(url: str, shown: str | None) -> None:
    assert hide_password(url) == (shown or url)
