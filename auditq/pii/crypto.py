"""AES-256-GCM for data keys (wrapped under AUDITQ_PII_KEY) and row fields (under a data key).

Each encryption takes a fresh random 96-bit nonce, stored in front of the ciphertext; the
associated data binds a wrapped key to its key id and a row's ciphertext to its row id.
"""

from __future__ import annotations

import binascii
import contextlib
import os
from collections.abc import Iterator, Sequence
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from auditq.config import Settings

_NONCE = 12
_KEY_AAD = b"auditq/pii-key/v1\0"
ROW_AAD = b"auditq/pii-row/v1\0"  # native/auditq_pii.c uses it too


class Undecryptable(ValueError):
    """Wrong key, or a ciphertext that was changed."""


def new_data_keys(count: int) -> list[bytes]:
    """``count`` random AES-256 keys, from one read of the system's random source."""
    pool = os.urandom(32 * count)
    return [pool[i : i + 32] for i in range(0, len(pool), 32)]


def _seal(aead: AESGCM, plain: bytes, aad: bytes, nonce: bytes | None = None) -> str:
    nonce = nonce or os.urandom(_NONCE)
    # binascii directly: base64.b64encode is a Python wrapper around it (every row pays it).
    return binascii.b2a_base64(nonce + aead.encrypt(nonce, plain, aad), newline=False).decode()


def nonces(count: int) -> Iterator[bytes]:
    """``count`` fresh random nonces from one read of the system's random source (a batch
    costs one call, not one per row)."""
    pool = os.urandom(_NONCE * count)
    return (pool[i : i + _NONCE] for i in range(0, len(pool), _NONCE))


def _open(aead: AESGCM, sealed: str, aad: bytes) -> bytes:
    try:
        raw = binascii.a2b_base64(sealed, strict_mode=True)
        return aead.decrypt(raw[:_NONCE], raw[_NONCE:], aad)
    except (InvalidTag, ValueError) as error:
        raise Undecryptable("does not decrypt with this key") from error


def wrap(master: AESGCM, key_id: str, data_key: bytes, nonce: bytes | None = None) -> str:
    """``nonce``: one of ``nonces()``, or None for a fresh one."""
    return _seal(master, data_key, _KEY_AAD + key_id.encode(), nonce)


def unwrap(masters: Sequence[AESGCM], key_id: str, wrapped: str) -> AESGCM:
    """The data key, unwrapped with the first master key that opens it (the current key,
    then the old one during a rotation)."""
    return AESGCM(unwrap_bytes(masters, key_id, wrapped))


def unwrap_bytes(masters: Sequence[AESGCM], key_id: str, wrapped: str) -> bytes:
    for master in masters:
        with contextlib.suppress(Undecryptable):
            return _open(master, wrapped, _KEY_AAD + key_id.encode())
    raise Undecryptable("does not unwrap with AUDITQ_PII_KEY (nor AUDITQ_PII_OLD_KEY)")


def masters(settings: Settings) -> list[AESGCM]:
    return [AESGCM(key) for key in settings.pii_masters]


def encrypt(data_key: AESGCM, row_id: UUID, plain: bytes, nonce: bytes) -> str:
    """``nonce``: one of ``nonces()``, never used twice."""
    return _seal(data_key, plain, ROW_AAD + row_id.bytes, nonce)


def decrypt(data_key: AESGCM, row_id: UUID, sealed: str) -> bytes:
    return _open(data_key, sealed, ROW_AAD + row_id.bytes)
