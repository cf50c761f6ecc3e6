"""Supabase Auth as the tests need it: access tokens (HS256 and ES256) and a JWKS endpoint.

``JwksServer`` is a small HTTP server the test session starts, serving
``/auth/v1/.well-known/jwks.json`` the way Supabase publishes its signing keys, and counting
the fetches (so tests can see the cache at work).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

JWT_SECRET = "test-project-jwt-secret-of-at-least-32-chars"  # noqa: S105
JWKS_PATH = "/auth/v1/.well-known/jwks.json"


def es256_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "alg": "ES256", "use": "sig"}


def claims(sub: str = "u_1", **overrides: Any) -> dict[str, Any]:
    """An access token's claims as Supabase Auth issues them, valid for an hour."""
    now = int(time.time())
    base = {
        "sub": sub,
        "role": "authenticated",
        "aud": "authenticated",
        "email": f"{sub}@example.com",
        "iat": now,
        "exp": now + 3600,
    }
    return {**base, **overrides}


def hs256_token(sub: str = "u_1", secret: str = JWT_SECRET, **overrides: Any) -> str:
    return jwt.encode(claims(sub, **overrides), secret, algorithm="HS256")


def es256_token(key: ec.EllipticCurvePrivateKey, kid: str, sub: str = "u_1", **overrides) -> str:
    return jwt.encode(claims(sub, **overrides), key, algorithm="ES256", headers={"kid": kid})


class JwksServer:
    """Serves ``keys`` (kid -> private key; their public halves are published) on 127.0.0.1."""

    def __init__(self) -> None:
        self.keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                if self.path != JWKS_PATH:
                    self.send_error(404)
                    return
                server.fetches += 1
                published = [public_jwk(k, kid) for kid, k in list(server.keys.items())]
                body = json.dumps({"keys": published}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """What SUPABASE_URL would be."""
        return f"http://127.0.0.1:{self._http.server_port}"

    @property
    def jwks_url(self) -> str:
        return self.url + JWKS_PATH

    def add_key(self, kid: str) -> ec.EllipticCurvePrivateKey:
        self.keys[kid] = es256_key()
        return self.keys[kid]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.shutdown()
        self._http.server_close()
