"""Connection URLs fit to show: the password hidden, everything else as given."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def hide_password(url: str, mask: str = "***") -> str:
    """``url`` with its password (if any) replaced by ``mask``; user, host and port kept."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    # The host part verbatim (IPv6 brackets and port included), after the last "@".
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{mask}@{host}"))
