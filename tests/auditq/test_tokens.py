"""Supabase access-token verification: only a verified token names the actor."""

import asyncio
import base64
import hmac
import json
import time

import jwt
import pytest

from auditq import tokens
from auditq.config import load_settings
from auditq.tokens import ANONYMOUS, Actor, TokenVerifier
from tests.supabase_auth import (
    JWT_SECRET,
    es256_key,
    es256_token,
    hs256_token,
    public_jwk,
)


@pytest.fixture
def verifier(jwks):
    return TokenVerifier(JWT_SECRET, jwks.jwks_url)


def bearer(token: str) -> str:
    return f"Bearer {token}"


def rejected(reason: str) -> Actor:
    return Actor(ANONYMOUS, None, reason)


def test_hs256_token_of_a_signed_in_user_is_the_actor(verifier):
    assert verifier.actor(bearer(hs256_token("u_42"))) == Actor("user", "u_42")


def test_es256_token_is_verified_with_the_projects_jwks(verifier, jwks):
    token = es256_token(jwks.keys["key-1"], "key-1", "u_7")
    assert verifier.actor(bearer(token)) == Actor("user", "u_7")
    assert verifier.actor(bearer(token)) == Actor("user", "u_7")
    assert jwks.fetches == 1  # cached


def test_the_async_path_verifies_the_same_and_fetches_once(verifier, jwks):
    async def many():
        token = es256_token(jwks.keys["key-1"], "key-1", "u_7")
        return await asyncio.gather(*(verifier.aactor(bearer(token)) for _ in range(20)))

    assert set(asyncio.run(many())) == {Actor("user", "u_7")}
    assert jwks.fetches == 1


def test_settings_name_the_secret_and_the_jwks_of_supabase_url(jwks):
    settings = load_settings(
        supabase_url=jwks.url,
        supabase_service_role_key="unused-here",
        supabase_jwt_secret=JWT_SECRET,
    )
    verifier = TokenVerifier.from_settings(settings)
    assert verifier.actor(bearer(hs256_token("a"))) == Actor("user", "a")
    token = es256_token(jwks.keys["key-1"], "key-1", "b")
    assert verifier.actor(bearer(token)) == Actor("user", "b")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda k: hs256_token("u_1", secret="x" * 40), "invalid_signature"),
        (lambda k: es256_token(es256_key(), "key-1", "u_1"), "invalid_signature"),
        (lambda k: hs256_token("u_1", exp=int(time.time()) - 60), "expired"),
        (lambda k: es256_token(k, "key-1", exp=int(time.time()) - 60), "expired"),
        (lambda k: hs256_token("u_1", aud="someone-else"), "wrong_audience"),
        (lambda k: es256_token(k, "key-1", aud=["other"]), "wrong_audience"),
        (lambda k: hs256_token("u_1", role="service_role", aud=None), "wrong_audience"),
        (lambda k: hs256_token("u_1", nbf=int(time.time()) + 600), "not_yet_valid"),
        (lambda k: jwt.encode({**tokens_claims(), "sub": ""}, JWT_SECRET), "missing_claim"),
        (lambda k: jwt.encode({"sub": "u_1", "aud": "authenticated"}, JWT_SECRET), "missing_claim"),
        (lambda k: "not.a.jwt", "malformed"),
        (lambda k: jwt.encode(tokens_claims(), None, algorithm="none"), "unsupported_algorithm"),
    ],
    ids=[
        "forged-hs256",
        "forged-es256-same-kid",
        "expired-hs256",
        "expired-es256",
        "wrong-audience",
        "wrong-audience-list",
        "service-role-key",
        "not-yet-valid",
        "no-subject",
        "no-expiry",
        "garbage",
        "alg-none",
    ],
)
def test_a_refused_token_is_anonymous_with_the_reason(verifier, jwks, make, reason):
    assert verifier.actor(bearer(make(jwks.keys["key-1"]))) == rejected(reason)


def b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def tokens_claims():
    return {"sub": "u_1", "aud": "authenticated", "exp": int(time.time()) + 60}


def test_a_public_key_cannot_serve_as_an_hmac_secret(jwks):
    # The classic confusion: sign HS256 with the published key and name its kid.
    # PyJWT refuses to sign with a JWK as the secret, so the token is put together by hand.
    published = json.dumps(public_jwk(jwks.keys["key-1"], "key-1")).encode()
    header = {"alg": "HS256", "typ": "JWT", "kid": "key-1"}
    signed = b".".join(b64(json.dumps(part).encode()) for part in (header, tokens_claims()))
    forged = (signed + b"." + b64(hmac.digest(published, signed, "sha256"))).decode()
    assert TokenVerifier(None, jwks.jwks_url).actor(bearer(forged)) == rejected(
        "hs256_not_configured"
    )
    assert TokenVerifier(JWT_SECRET, jwks.jwks_url).actor(bearer(forged)) == rejected(
        "invalid_signature"
    )


def test_unknown_kid_refetches_once_then_stays_refused(verifier, jwks):
    stranger = es256_key()
    assert verifier.actor(bearer(es256_token(stranger, "nobody-knows"))) == rejected("unknown_kid")
    fetches = jwks.fetches
    for _ in range(5):  # made-up key ids do not turn into a fetch each
        verifier.actor(bearer(es256_token(stranger, "nobody-knows")))
    assert jwks.fetches == fetches


def test_a_rotated_in_key_is_fetched_when_a_token_names_it(verifier, jwks, monkeypatch):
    assert verifier.actor(bearer(es256_token(jwks.keys["key-1"], "key-1"))).actor_type == "user"
    new = jwks.add_key("key-2")
    monkeypatch.setattr(tokens, "JWKS_MIN_REFRESH", 0.0)  # a rotation later than the limit
    assert verifier.actor(bearer(es256_token(new, "key-2", "u_9"))) == Actor("user", "u_9")
    assert jwks.fetches == 2


def test_without_a_reachable_jwks_asymmetric_tokens_are_refused():
    verifier = TokenVerifier(JWT_SECRET, "http://127.0.0.1:9/auth/v1/.well-known/jwks.json")
    token = es256_token(es256_key(), "key-1")
    assert verifier.actor(bearer(token)) == rejected("jwks_unavailable")
    assert TokenVerifier(JWT_SECRET).actor(bearer(token)) == rejected("jwks_not_configured")


def test_the_anon_key_and_no_token_are_anonymous_without_a_reason(verifier):
    anon_key = jwt.encode(
        {"role": "anon", "iss": "supabase", "exp": int(time.time()) + 60}, JWT_SECRET
    )
    assert verifier.actor(bearer(anon_key)) == Actor(ANONYMOUS)
    assert verifier.actor(None) == Actor(ANONYMOUS)
    assert verifier.actor("Basic dXNlcjpwYXNz") == Actor(ANONYMOUS)
    assert verifier.actor("Bearer ") == Actor(ANONYMOUS)


def test_a_short_jwt_secret_is_a_config_error_that_does_not_echo_it():
    from auditq.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_settings(supabase_jwt_secret="short-secret")
    assert "SUPABASE_JWT_SECRET" in str(caught.value)
    assert "short-secret" not in str(caught.value)
