"""Ed25519 keys for seals: AUDITQ_SEAL_KEY signs, AUDITQ_SEAL_PUBLIC_KEY (or the public half
of AUDITQ_SEAL_KEY) verifies. A seal's signature is over its 32-byte hash."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from auditq.config import ConfigError, Settings, ed25519_key_bytes


@dataclass(frozen=True)
class KeyPair:
    private: str  # base64 seed: AUDITQ_SEAL_KEY
    public: str  # base64: AUDITQ_SEAL_PUBLIC_KEY


def generate() -> KeyPair:
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes_raw()
    return KeyPair(_b64(seed), _b64(_public_bytes(key.public_key())))


class Signer:
    def __init__(self, seed: bytes):
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = _public_bytes(self._key.public_key())

    def sign(self, digest: bytes) -> bytes:
        return self._key.sign(digest)


class Checker:
    def __init__(self, public_key: bytes):
        self.public_key = public_key
        self._key = Ed25519PublicKey.from_public_bytes(public_key)

    def valid(self, digest: bytes, signature: bytes) -> bool:
        try:
            self._key.verify(signature, digest)
        except InvalidSignature:
            return False
        return True


def signer(settings: Settings) -> Signer:
    """The signer AUDITQ_SEAL_KEY holds; ConfigError naming the variable when it is unset."""
    if settings.seal_key is None:
        raise ConfigError(
            "AUDITQ_SEAL_KEY is not set: seals are signed (python -m auditq keygen prints a key)"
        )
    return Signer(ed25519_key_bytes(settings.seal_key.get_secret_value()))


def checker(settings: Settings) -> Checker:
    """The public key verify checks against: AUDITQ_SEAL_PUBLIC_KEY, else AUDITQ_SEAL_KEY's."""
    derived = signer(settings).public_key if settings.seal_key is not None else None
    if settings.seal_public_key is None:
        if derived is None:
            raise ConfigError(
                "AUDITQ_SEAL_PUBLIC_KEY is not set (nor AUDITQ_SEAL_KEY): nothing to check"
                " the seals' signatures against"
            )
        return Checker(derived)
    public = ed25519_key_bytes(settings.seal_public_key)
    if derived is not None and derived != public:
        raise ConfigError("AUDITQ_SEAL_PUBLIC_KEY is not the public half of AUDITQ_SEAL_KEY")
    return Checker(public)


def _public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
