"""Who made a request: the user of a verified Supabase access token, or nobody.

Supabase signs access tokens HS256 with the project's JWT secret (legacy projects) or with
an asymmetric key (ES256, RS256) published at ``<SUPABASE_URL>/auth/v1/.well-known/jwks.json``.
A token becomes the actor only if its signature, ``exp`` and ``aud`` ("authenticated") all
check out; anything else (forged, expired, wrong audience, unknown key, garbage) is recorded
as ``anonymous`` with the reason, so an attacker can never choose whom an event names.

The algorithm in a token's header only selects where to look for the key: HS256 only ever
uses the secret, the asymmetric ones only keys from the JWKS whose algorithm matches, so a
token cannot make a public key serve as an HMAC secret.

The JWKS is cached for ``JWKS_TTL`` and fetched again when a token names a key it does not
hold (key rotation), at most once per ``JWKS_MIN_REFRESH`` so that tokens with made-up key
ids cannot turn every request into a fetch.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from auditq.config import Settings

AUDIENCE = "authenticated"
ANONYMOUS = "anonymous"
USER = "user"
HMAC_ALGORITHMS = frozenset({"HS256"})
JWKS_ALGORITHMS = frozenset({"ES256", "RS256"})
JWKS_TTL = 600.0  # seconds a fetched key set is trusted before it is fetched again
JWKS_MIN_REFRESH = 30.0  # seconds between fetches caused by unknown key ids
JWKS_TIMEOUT = 2.0  # seconds a fetch may take (it happens inside a request)

# Why a presented token is not the actor (stored in the event's metadata).
_CLAIM_ERRORS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.InvalidSignatureError, "invalid_signature"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
    (jwt.DecodeError, "malformed"),
)


_ANON_KEY = "anon_key"  # a validly signed anon key: nobody signed in


class TokenRejected(Exception):
    """A token that must not become the actor; ``reason`` is a short code, safe to store."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Actor:
    """The actor fields of an event: a verified user, or anonymous (with why, if a token
    was presented and refused)."""

    actor_type: str
    actor_id: str | None = None
    rejected: str | None = None

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"actor_type": self.actor_type, "actor_id": self.actor_id}
        if self.rejected:
            out["metadata"] = {"auth_rejected": self.rejected}
        return out


NOBODY = Actor(ANONYMOUS)


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, None without one."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


@dataclass
class _KeySet:
    """The JWKS as last fetched: key id -> key, and when."""

    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    fetched_at: float = float("-inf")  # last successful fetch
    tried_at: float = float("-inf")  # last attempt, successful or not
    generation: int = 0  # bumped by every attempt, so waiters see one happened

    def lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if time.monotonic() - self.fetched_at > JWKS_TTL:
            return None
        return self.keys.get(kid) if kid else None

    def may_fetch(self) -> bool:
        return time.monotonic() - self.tried_at >= JWKS_MIN_REFRESH or not self.keys

    def load(self, response: httpx.Response | None) -> None:
        """Take a fetch's response; a failed fetch keeps the keys already held."""
        self.tried_at = time.monotonic()
        self.generation += 1
        if response is None or response.status_code != 200:
            return
        try:
            found = jwt.PyJWKSet.from_dict(response.json()).keys
        except (ValueError, jwt.PyJWKSetError):
            return
        self.keys = {k.key_id: k for k in found if k.key_id}
        self.fetched_at = self.tried_at


class TokenVerifier:
    """Verifies Supabase access tokens (sync for Flask, async for FastAPI)."""

    def __init__(self, secret: str | None = None, jwks_url: str | None = None):
        self._secret = secret
        self._jwks_url = jwks_url
        self._keys = _KeySet()
        self._lock = threading.Lock()  # one sync fetch at a time
        self._fetching: asyncio.Task[None] | None = None  # the async fetch waiters share

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        secret = settings.supabase_jwt_secret
        jwks = f"{settings.supabase_url}/auth/v1/.well-known/jwks.json"
        return cls(
            secret.get_secret_value() if secret else None,
            jwks if settings.supabase_url else None,
        )

    # --- actors -----------------------------------------------------------------------------

    def actor(self, authorization: str | None) -> Actor:
        """The actor of a request with this Authorization header."""
        token = bearer(authorization)
        try:
            return _user(self.verify(token)) if token else NOBODY
        except TokenRejected as rejected:
            return _refused(rejected)

    async def aactor(self, authorization: str | None) -> Actor:
        token = bearer(authorization)
        try:
            return _user(await self.averify(token)) if token else NOBODY
        except TokenRejected as rejected:
            return _refused(rejected)

    # --- tokens -----------------------------------------------------------------------------

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a user's access token; raises TokenRejected for anything else."""
        algorithm, kid = _header(token)
        key = self._key(algorithm, kid)
        if key is None:
            seen = self._keys.generation
            with self._lock:
                if self._keys.generation == seen:  # nobody fetched while this thread waited
                    self._keys.load(_get(self._jwks_url))
            key = self._key(algorithm, kid, final=True)
        return _claims(token, key, algorithm)

    async def averify(self, token: str) -> dict[str, Any]:
        algorithm, kid = _header(token)
        key = self._key(algorithm, kid)
        if key is None:
            task = self._fetching
            if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
                task = self._fetching = asyncio.create_task(self._afetch())
            await asyncio.shield(task)
            key = self._key(algorithm, kid, final=True)
        return _claims(token, key, algorithm)

    async def _afetch(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=JWKS_TIMEOUT) as http:
                response: httpx.Response | None = await http.get(self._jwks_url or "")
        except httpx.HTTPError:
            response = None
        self._keys.load(response)

    def _key(self, algorithm: str, kid: str | None, final: bool = False) -> Any:
        """The key to check this token with; None when the JWKS should be fetched first."""
        if algorithm in HMAC_ALGORITHMS:
            if not self._secret:
                raise TokenRejected("hs256_not_configured")
            return self._secret
        if algorithm not in JWKS_ALGORITHMS:
            raise TokenRejected("unsupported_algorithm")
        if not self._jwks_url:
            raise TokenRejected("jwks_not_configured")
        jwk = self._keys.lookup(kid)
        if jwk is None:
            if final or not self._keys.may_fetch():
                raise TokenRejected("unknown_kid" if self._keys.keys else "jwks_unavailable")
            return None
        if jwk.algorithm_name != algorithm:
            raise TokenRejected("algorithm_mismatch")
        return jwk.key


def _get(url: str | None) -> httpx.Response | None:
    try:
        return httpx.get(url or "", timeout=JWKS_TIMEOUT)
    except httpx.HTTPError:
        return None


def _header(token: str) -> tuple[str, str | None]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise TokenRejected("malformed") from None
    kid = header.get("kid")
    return str(header.get("alg")), kid if isinstance(kid, str) else None


def _claims(token: str, key: Any, algorithm: str) -> dict[str, Any]:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            # The audience is checked below: the anon key (role "anon") has another one.
            options={"require": ["exp"], "verify_aud": False},
        )
    except jwt.InvalidTokenError as error:
        reason = next((r for kind, r in _CLAIM_ERRORS if isinstance(error, kind)), "invalid")
        raise TokenRejected(reason) from None
    if claims.get("role") == "anon":
        raise TokenRejected(_ANON_KEY)
    audience = claims.get("aud")
    if AUDIENCE not in (audience if isinstance(audience, list) else [audience]):
        raise TokenRejected("wrong_audience")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise TokenRejected("missing_claim")
    return claims


def _user(claims: dict[str, Any]) -> Actor:
    return Actor(USER, claims["sub"][:256])


def _refused(rejected: TokenRejected) -> Actor:
    # supabase-js sends the project's anon key when nobody is signed in: a logged-out
    # visitor, not an attack, so no reason is recorded.
    return NOBODY if rejected.reason == _ANON_KEY else Actor(ANONYMOUS, rejected=rejected.reason)
