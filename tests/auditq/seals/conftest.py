"""Fixtures for the seal tests: a key pair (the ``store`` fixture is tests/auditq/conftest.py's)."""

from __future__ import annotations

import pytest

from auditq.config import Settings
from auditq.seals import signing


@pytest.fixture(scope="session")
def key_pair() -> signing.KeyPair:
    return signing.generate()


@pytest.fixture
def signer(key_pair) -> signing.Signer:
    return signing.signer(Settings(seal_key=key_pair.private))


@pytest.fixture
def checker(key_pair) -> signing.Checker:
    return signing.checker(Settings(seal_public_key=key_pair.public))
