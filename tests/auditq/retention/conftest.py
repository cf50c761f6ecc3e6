"""Fixtures for the retention tests (the seal key pair is shared with tests/auditq/seals)."""

from __future__ import annotations

from tests.auditq.seals.conftest import checker, key_pair, signer  # noqa: F401
