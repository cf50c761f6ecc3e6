"""Every setting auditq reads, declared once, read from the environment (12-factor).

The library reads no ``os.environ`` elsewhere: it takes a ``Settings`` (usually from
``load_settings()``), so tests can build one directly with keyword arguments. Only the
dev tooling (``auditq.devtools``) and ``gunicorn.conf.py`` handle the environment itself,
to build their children's environment and the server's options.
"""

from __future__ import annotations

import base64
import binascii
from functools import cached_property
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic import model_validator as _model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from auditq.keys import hash_tag
from auditq.redact import DEFAULT_KEYS as DEFAULT_REDACT_KEYS
from auditq.redact import key_set


class ConfigError(ValueError):
    """Bad configuration. The message names the variable and never echoes its value."""


def _env(name: str, **kwargs):
    # Fields are named for the code (settings.max_queue); the alias is the env var.
    return Field(validation_alias=AliasChoices(name, name.lower()), **kwargs)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        populate_by_name=True, extra="ignore", case_sensitive=False, frozen=True
    )

    # --- connections -------------------------------------------------------------------
    redis_url: str = _env("REDIS_URL", default="redis://localhost:6379/0")
    supabase_url: str | None = _env("SUPABASE_URL", default=None)
    supabase_service_role_key: SecretStr | None = _env("SUPABASE_SERVICE_ROLE_KEY", default=None)
    database_url: SecretStr | None = _env("DATABASE_URL", default=None)
    supabase_jwt_secret: SecretStr | None = _env(
        "SUPABASE_JWT_SECRET",
        default=None,
        description="The project's JWT secret, to verify HS256 access tokens (legacy projects)"
        " in auditq.flask and auditq.fastapi. Asymmetric tokens are verified with the"
        " project's JWKS at SUPABASE_URL/auth/v1/.well-known/jwks.json and need no secret.",
    )
    store: Literal["auto", "supabase", "postgres"] = _env(
        "AUDITQ_STORE", default="auto", description="auto: supabase if SUPABASE_URL, else postgres"
    )

    # --- queue and producers -----------------------------------------------------------
    prefix: str = _env(
        "AUDITQ_PREFIX",
        default="audit",
        min_length=1,
        max_length=64,
        description="Prefix of every Redis key. On Redis Cluster it needs a hash tag"
        " (`{audit}`); braces are allowed only as one such tag.",
    )
    shards: int = _env(
        "AUDITQ_SHARDS",
        default=1,
        ge=1,
        le=64,
        description="Streams the queue is split into, each with its own keys and bound"
        " (AUDITQ_MAX_QUEUE / N); on Redis Cluster they spread over the masters. 1 keeps one"
        " stream. Producers and workers should agree; workers also drain every shard a"
        " process ever used, so lowering it loses nothing.",
    )
    # ~0.5 KB per queued event: 100,000 is 50-60 MB of Redis memory.
    max_queue: int = _env("AUDITQ_MAX_QUEUE", default=100_000, gt=0)
    overflow: Literal["drop", "block", "direct"] = _env("AUDITQ_OVERFLOW", default="drop")
    block_timeout: float = _env("AUDITQ_BLOCK_TIMEOUT", default=1.0, ge=0, le=60)
    redis_timeout: float = _env("AUDITQ_REDIS_TIMEOUT", default=0.1, gt=0, le=30)
    direct_timeout: float = _env("AUDITQ_DIRECT_TIMEOUT", default=2.0, gt=0, le=60)
    max_event_bytes: int = _env("AUDITQ_MAX_EVENT_BYTES", default=65_536, ge=1024, le=1_048_576)

    # --- worker --------------------------------------------------------------------------
    batch_min: int = _env("AUDITQ_BATCH_MIN", default=50, gt=0)
    batch_start: int | None = _env("AUDITQ_BATCH_START", default=None, gt=0)
    batch_max: int = _env("AUDITQ_BATCH_MAX", default=5_000, gt=0)
    batch_max_bytes: int = _env("AUDITQ_BATCH_MAX_BYTES", default=4_194_304, gt=0)
    batch_target_ms: int = _env("AUDITQ_BATCH_TARGET_MS", default=500, gt=0)
    drain_interval: float = _env("AUDITQ_DRAIN_INTERVAL", default=0.5, gt=0)
    drain_budget: float = _env("AUDITQ_DRAIN_BUDGET", default=10.0, gt=0)
    claim_timeout: float = _env("AUDITQ_CLAIM_TIMEOUT", default=60.0, gt=0)
    max_deliveries: int = _env("AUDITQ_MAX_DELIVERIES", default=5, gt=0)
    retry_base: float = _env("AUDITQ_RETRY_BASE", default=0.5, gt=0)
    retry_max: float = _env("AUDITQ_RETRY_MAX", default=30.0, gt=0)
    heartbeat_interval: float = _env("AUDITQ_HEARTBEAT_INTERVAL", default=5.0, gt=0)
    heartbeat_ttl: float = _env("AUDITQ_HEARTBEAT_TTL", default=30.0, gt=0)
    worker_forget_after: float = _env("AUDITQ_WORKER_FORGET_AFTER", default=3600.0, gt=0)
    shutdown_grace: float = _env("AUDITQ_SHUTDOWN_GRACE", default=25.0, gt=0)
    # Bounds one insert attempt of the worker. Keep it under claim_timeout (or another worker
    # takes over a batch that is still being written) and under shutdown_grace (or SIGTERM
    # cannot wait for the attempt in flight).
    store_timeout: float = _env("AUDITQ_STORE_TIMEOUT", default=15.0, gt=0, le=300)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = _env(
        "AUDITQ_LOG_LEVEL", default="INFO"
    )

    # --- dashboard -------------------------------------------------------------------------
    port: int = _env("PORT", default=5000, gt=0, lt=65536)
    secret_key: SecretStr | None = _env("SECRET_KEY", default=None)
    dashboard_password: SecretStr | None = _env("DASHBOARD_PASSWORD", default=None)
    dashboard_viewer_password: SecretStr | None = _env("DASHBOARD_VIEWER_PASSWORD", default=None)
    metrics_token: SecretStr | None = _env("METRICS_TOKEN", default=None)
    ingest_token: SecretStr | None = _env("INGEST_TOKEN", default=None)
    api_token: SecretStr | None = _env("API_TOKEN", default=None)
    refresh_seconds: float = _env("AUDITQ_REFRESH_SECONDS", default=2.0, ge=0.5)
    url_prefix: str = _env("AUDITQ_URL_PREFIX", default="")
    trusted_proxies: int | None = _env(
        "AUDITQ_TRUSTED_PROXIES",
        default=None,
        ge=0,
        le=10,
        description="Proxy hops in front of the web process whose X-Forwarded-* headers are"
        " trusted (by gunicorn and the app alike). Unset: 1 on Heroku (DYNO set), else 0, dev"
        " mode included; with 0 a client cannot choose the address the login limit counts.",
    )
    dyno: str | None = _env(
        "DYNO",
        default=None,
        description="Set by Heroku on every dyno; auditq reads it only to know Heroku's router"
        " is in front (see AUDITQ_TRUSTED_PROXIES).",
    )

    # --- privacy ---------------------------------------------------------------------------
    redact_keys: str = _env(
        "AUDITQ_REDACT_KEYS",
        default=",".join(DEFAULT_REDACT_KEYS),
        description="Comma-separated metadata keys (case-insensitive, at any depth) whose"
        ' values are replaced by "[redacted]" before an event is queued or stored, on every'
        " path. Empty: redact nothing.",
    )
    # Personal fields (auditq/pii): encrypted per subject when AUDITQ_PII_KEY is set.
    pii_key: SecretStr | None = _env(
        "AUDITQ_PII_KEY",
        default=None,
        description="Base64 of 32 random bytes: the key that wraps each subject's data key"
        " (AES-256-GCM). Set: AUDITQ_PII_FIELDS are stored only as ciphertext. Unset: stored"
        " in clear. `python -m auditq dev` generates one.",
    )
    pii_old_key: SecretStr | None = _env(
        "AUDITQ_PII_OLD_KEY",
        default=None,
        description="During a rotation of AUDITQ_PII_KEY: the previous key. Readers and"
        " writers unwrap data keys with either; `python -m auditq pii-rewrap` rewraps them all"
        " under AUDITQ_PII_KEY, after which this can be unset.",
    )
    pii_fields: str = _env(
        "AUDITQ_PII_FIELDS",
        default="ip,user_agent,metadata.email,metadata.name,metadata.phone",
        description="Comma-separated personal fields encrypted per subject (actor_id): ip,"
        " user_agent, and metadata keys as metadata.<key> (dots for nested keys).",
    )
    pii_viewer_clear: bool = _env(
        "AUDITQ_PII_VIEWER_CLEAR",
        default=False,
        description="Let the dashboard's viewer role see personal fields decrypted; off, they"
        " read as [hidden] to viewers (admins and API_TOKEN always see them).",
    )
    pii_cache_size: int = _env(
        "AUDITQ_PII_CACHE_SIZE",
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Unwrapped data keys a writer (worker, client) keeps in memory, per"
        " process; the keys used lately stay (least recently used first out, to within"
        " half the size).",
    )

    # --- alerts ----------------------------------------------------------------------------
    # Every web and worker process runs the evaluator; a Redis lease and a lease row in the
    # store (AUDITQ_ALERT_LEASE seconds, renewed each run) let exactly one of them evaluate
    # at a time, also while one of the two is down (auditq/alerts/lease.py).
    alert_interval: float = _env("AUDITQ_ALERT_INTERVAL", default=5.0, gt=0, le=300)
    alert_lease: float = _env("AUDITQ_ALERT_LEASE", default=30.0, gt=0, le=3600)
    alerts_in_web: bool = _env("AUDITQ_ALERTS_IN_WEB", default=True)
    alert_http_timeout: float = _env("AUDITQ_ALERT_HTTP_TIMEOUT", default=10.0, gt=0, le=120)
    alert_max_attempts: int = _env("AUDITQ_ALERT_MAX_ATTEMPTS", default=12, ge=1, le=100)
    alert_retry_max: float = _env("AUDITQ_ALERT_RETRY_MAX", default=300.0, gt=0, le=86_400)
    alert_allow_private: bool = _env(
        "AUDITQ_ALERT_ALLOW_PRIVATE",
        default=False,
        description="Let alert channels (webhooks, Slack, PagerDuty URLs, SMTP hosts) reach"
        " loopback, private and link-local addresses. Off: such destinations are refused when"
        " a channel is saved and at every send. `python -m auditq dev` turns it on.",
    )
    # Base URL of the dashboard, for links in notifications (optional).
    public_url: str | None = _env("AUDITQ_PUBLIC_URL", default=None)

    # --- seals (auditq/seals) ----------------------------------------------------------------
    seal_key: SecretStr | None = _env(
        "AUDITQ_SEAL_KEY",
        default=None,
        description="Base64 of a 32-byte Ed25519 private seed that signs seals"
        " (`python -m auditq keygen` makes one). Unset: workers do not seal.",
    )
    seal_public_key: str | None = _env(
        "AUDITQ_SEAL_PUBLIC_KEY",
        default=None,
        description="Base64 Ed25519 public key that `verify` checks seals against"
        " (derived from AUDITQ_SEAL_KEY when that is set).",
    )
    seal_interval: float = _env(
        "AUDITQ_SEAL_INTERVAL",
        default=30.0,
        gt=0,
        le=86_400,
        description="Seconds between seal passes (one worker at a time, under a Redis lease).",
    )
    seal_grace: float = _env(
        "AUDITQ_SEAL_GRACE",
        default=60.0,
        ge=0,
        le=86_400,
        description="Seconds a row waits after it was stored before a seal covers it.",
    )

    # --- retention (auditq/retention) ----------------------------------------------------
    retention_days: int | None = _env(
        "AUDITQ_RETENTION_DAYS",
        default=None,
        ge=1,
        description="Archive, then drop, every monthly partition whose whole month is older"
        " than this many days (a daily worker job and `python -m auditq retention`; needs"
        " DATABASE_URL). Unset: keep forever.",
    )
    archive_url: str | None = _env(
        "AUDITQ_ARCHIVE_URL",
        default=None,
        description="Where retention writes archived months: file:///path or"
        " s3://bucket/prefix (with AUDITQ_S3_ENDPOINT and AWS_ACCESS_KEY_ID,"
        " AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION). Nothing is dropped without it.",
    )
    s3_endpoint: str | None = _env(
        "AUDITQ_S3_ENDPOINT",
        default=None,
        description="Endpoint of the S3-compatible store for s3:// archives (Supabase"
        " Storage, R2, MinIO); unset: AWS S3.",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        # The shards' keys put their number inside the prefix's hash tag (auditq.keys); a
        # stray brace would make Redis Cluster hash something else than the tag.
        tag = hash_tag(value)
        braces = value.count("{") + value.count("}")
        if braces and (tag is None or braces != 2):
            raise ValueError("braces are allowed only as one hash tag, e.g. {audit}")
        return value

    @field_validator("supabase_url")
    @classmethod
    def _supabase_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s):// URL")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if urlsplit(value.get_secret_value()).scheme not in ("postgres", "postgresql"):
            raise ValueError("must be a postgres:// or postgresql:// URL")
        return value

    @field_validator("supabase_jwt_secret")
    @classmethod
    def _jwt_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        # Supabase's secrets are 40+ characters; a short one makes forging tokens feasible.
        if len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator("archive_url")
    @classmethod
    def _archive_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("file", "s3"):
            raise ValueError("must be a file:///path or s3://bucket/prefix URL")
        return value

    @field_validator("seal_key")
    @classmethod
    def _seal_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        ed25519_key_bytes(value.get_secret_value())
        return value

    @field_validator("pii_key", "pii_old_key")
    @classmethod
    def _pii_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        pii_key_bytes(value.get_secret_value())
        return value

    @field_validator("pii_fields")
    @classmethod
    def _pii_fields(cls, value: str) -> str:
        for name in filter(None, (n.strip() for n in value.split(","))):
            head, _, rest = name.partition(".")
            if not (name in ("ip", "user_agent") or (head == "metadata" and rest)):
                raise ValueError("each field must be ip, user_agent or metadata.<key>")
        return value

    @field_validator("seal_public_key")
    @classmethod
    def _seal_public_key(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        ed25519_key_bytes(value)
        return value.strip()

    @field_validator("url_prefix")
    @classmethod
    def _url_prefix(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    @_model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.supabase_url and not self.supabase_service_role_key:
            raise ValueError("SUPABASE_URL is set but SUPABASE_SERVICE_ROLE_KEY is not")
        if self.supabase_service_role_key and not self.supabase_url:
            raise ValueError("SUPABASE_SERVICE_ROLE_KEY is set but SUPABASE_URL is not")
        if self.store == "supabase" and not self.supabase_url:
            raise ValueError("AUDITQ_STORE=supabase needs SUPABASE_URL")
        if self.store == "postgres" and not self.database_url:
            raise ValueError("AUDITQ_STORE=postgres needs DATABASE_URL")
        if self.pii_old_key and not self.pii_key:
            raise ValueError("AUDITQ_PII_OLD_KEY is set but AUDITQ_PII_KEY is not")
        start = self.batch_min if self.batch_start is None else self.batch_start
        if not self.batch_min <= start <= self.batch_max:
            raise ValueError("AUDITQ_BATCH_MIN <= AUDITQ_BATCH_START <= AUDITQ_BATCH_MAX must hold")
        return self

    @cached_property
    def proxy_hops(self) -> int:
        """How many X-Forwarded-* hops to trust: the setting, else Heroku's router, else none."""
        if self.trusted_proxies is not None:
            return self.trusted_proxies
        return 1 if self.dyno else 0

    @cached_property
    def redact_key_set(self) -> frozenset[str]:
        return key_set(self.redact_keys.split(","))

    @cached_property
    def pii_masters(self) -> tuple[bytes, ...]:
        """The keys data keys may be wrapped under: AUDITQ_PII_KEY first, then the old one."""
        keys = (self.pii_key, self.pii_old_key) if self.pii_key else ()
        return tuple(pii_key_bytes(k.get_secret_value()) for k in keys if k is not None)

    @cached_property
    def pii_field_list(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n.strip() for n in self.pii_fields.split(",") if n.strip()))

    @cached_property
    def store_kind(self) -> Literal["supabase", "postgres"] | None:
        """Which store events go to, or None when nothing is configured."""
        if self.store != "auto":
            return self.store
        if self.supabase_url:
            return "supabase"
        if self.database_url:
            return "postgres"
        return None


def key32(text: str, hint: str) -> bytes:
    """The 32 bytes a key setting holds (standard or URL-safe base64); ``hint`` says how to
    make one."""
    try:
        raw = base64.b64decode(text.strip().replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"must be base64 of 32 bytes ({hint})")
    return raw


def ed25519_key_bytes(text: str) -> bytes:
    return key32(text, "python -m auditq keygen prints one")


def pii_key_bytes(text: str) -> bytes:
    """The 32 bytes of AUDITQ_PII_KEY."""
    return key32(text, "e.g. openssl rand -base64 32")


def _describe(error: ValidationError) -> str:
    # Built from locations and messages only: pydantic's own str() includes the input
    # value, which for a key or a URL with a password would leak a secret.
    lines = []
    for err in error.errors(include_input=False, include_url=False):
        field = err["loc"][0] if err["loc"] else None
        name = _ENV_NAMES.get(str(field), str(field)) if field else "configuration"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{name}: {message}" if field else message)
    return "invalid configuration: " + "; ".join(lines)


_ENV_NAMES: dict[str, str] = {
    # Every field is declared with _env(), whose alias lists the variable's name first.
    name: str(field.validation_alias.choices[0])  # type: ignore[union-attr]
    for name, field in Settings.model_fields.items()
}


def load_settings(**overrides) -> Settings:
    """Read the environment; raise ConfigError with one clear line on bad input."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


def env_name(field: str) -> str:
    """The environment variable behind a Settings field (for docs and the settings page)."""
    return _ENV_NAMES[field]
