"""Demo traffic: realistic audit events at a steady rate, to watch the pipeline work.

``python -m auditq demo --rate 50`` (and ``python -m auditq dev --demo 50``) sends events
through ``AuditClient``, the way an app would: logins, logouts, failed logins (now and then
a brute-force burst from one address that ends in a lock), password resets, MFA changes,
role changes, API keys, and a few critical events (bans, account deletions, ownership
transfers), which the client writes straight to the store. It opens with one event of
every kind, so a fresh dashboard shows them all at once.

A malformed entry goes straight to the stream with XADD (bypassing the client, as a buggy
producer in another language would) at the start and then every ``malformed_every``
seconds, so the dead-letter page has something to show.
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import redis

from auditq.client import AuditClient, AuditUnavailable

log = logging.getLogger(__name__)

TENANTS = ("t_acme", "t_globex", "t_initech", "t_umbrella", "t_hooli")
ROLES = ("viewer", "member", "admin")
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "supabase-js/2.43.4",
)
LOGIN_FAILURES = ("invalid_password", "invalid_password", "unknown_email", "mfa_failed")
BURST_CHANCE = 0.002  # per event: a brute-force burst starts

# Entries a broken producer might write: each fails the worker's validation differently.
MALFORMED: tuple[dict[str, str], ...] = (
    {"event": '{"action": "user.login", "actor_id": "u_0001"'},  # truncated JSON
    {"payload": '{"action": "user.login"}'},  # no `event` field
    {"event": '{"actor_id": "u_0002", "outcome": "success"}'},  # no action
    {"event": '{"action": "user.login", "category": "urgent"}'},  # unknown category
    {"event": '{"action": "user.login", "occurred_at": "2024-05-01T12:00:00"}'},  # no zone
    {"event": '["user.login", "u_0003"]'},  # not an object
)


class DemoTraffic:
    """Makes the events. Deterministic for a given random.Random."""

    def __init__(self, rng: random.Random, users: int = 250) -> None:
        self.rng = rng
        self.users = [f"u_{n:04d}" for n in range(1, users + 1)]
        self.tenant_of = {user: rng.choice(TENANTS) for user in self.users}
        self.admins = self.users[:: max(1, users // 12)]
        self.ip_of = {user: self._ip() for user in self.users}
        self.agent_of = {user: rng.choice(USER_AGENTS) for user in self.users}
        self._pending: deque[dict[str, Any]] = deque()
        self._malformed = 0
        kinds: list[tuple[Callable[[], dict[str, Any]], float]] = [
            (self.login, 40),
            (self.logout, 22),
            (self.failed_login, 12),
            (self.token_refresh, 10),
            (self.profile_update, 5),
            (self.password_reset, 3),
            (self.mfa_change, 2),
            (self.role_change, 3),
            (self.api_key, 1.5),
            (self.ban, 0.8),
            (self.delete_account, 0.3),
            (self.ownership_transfer, 0.2),
        ]
        self._kinds = [kind for kind, _ in kinds]
        self._weights = [weight for _, weight in kinds]

    # --- one event of each kind ------------------------------------------------------------

    def _ip(self) -> str:
        rng = self.rng
        if rng.random() < 0.15:
            return f"2001:db8:{rng.randrange(1 << 16):x}::{rng.randrange(1, 1 << 16):x}"
        net = rng.choice(("192.0.2", "198.51.100", "203.0.113"))
        return f"{net}.{rng.randrange(1, 255)}"

    def _user(self) -> str:
        return self.rng.choice(self.users)

    def _admin(self) -> str:
        return self.rng.choice(self.admins)

    def _base(self, action: str, actor: str, **fields: Any) -> dict[str, Any]:
        event: dict[str, Any] = {
            "action": action,
            "actor_type": "user",
            "actor_id": actor,
            "tenant_id": self.tenant_of[actor],
            "ip": self.ip_of[actor],
            "user_agent": self.agent_of[actor],
            "request_id": uuid.UUID(int=self.rng.getrandbits(128), version=4).hex,
            "outcome": "success",
        }
        event.update(fields)
        return event

    def login(self) -> dict[str, Any]:
        user = self._user()
        method = self.rng.choice(("password", "password", "magic_link", "oauth_google"))
        return self._base("user.login", user, metadata={"method": method})

    def logout(self) -> dict[str, Any]:
        return self._base("user.logout", self._user())

    def failed_login(self, user: str | None = None, ip: str | None = None) -> dict[str, Any]:
        user = user or self._user()
        event = self._base(
            "user.login",
            user,
            outcome="failure",
            metadata={"reason": self.rng.choice(LOGIN_FAILURES)},
        )
        if ip is not None:
            event["ip"] = ip
        return event

    def token_refresh(self) -> dict[str, Any]:
        return self._base("session.refresh", self._user())

    def profile_update(self) -> dict[str, Any]:
        fields = self.rng.sample(("display_name", "avatar_url", "locale", "timezone"), k=2)
        return self._base(
            "user.profile_update",
            (user := self._user()),
            target_type="user",
            target_id=user,
            metadata={"fields": fields},
        )

    def password_reset(self) -> dict[str, Any]:
        return self._base("user.password_reset_requested", self._user())

    def mfa_change(self) -> dict[str, Any]:
        action = self.rng.choice(("user.mfa_enabled", "user.mfa_enabled", "user.mfa_disabled"))
        return self._base(action, self._user(), metadata={"factor": "totp"})

    def role_change(self) -> dict[str, Any]:
        old, new = self.rng.sample(ROLES, k=2)
        outcome = "denied" if self.rng.random() < 0.1 else "success"
        return self._base(
            "user.role_change",
            self._admin(),
            target_type="user",
            target_id=self._user(),
            outcome=outcome,
            metadata={"from": old, "to": new},
        )

    def api_key(self) -> dict[str, Any]:
        action = self.rng.choice(("api_key.create", "api_key.revoke"))
        key_id = f"key_{self.rng.getrandbits(40):010x}"
        return self._base(action, self._user(), target_type="api_key", target_id=key_id)

    def ban(self) -> dict[str, Any]:
        reason = self.rng.choice(("spam", "abuse", "chargeback fraud", "terms violation"))
        return self._base(
            "user.ban",
            self._admin(),
            category="critical",
            target_type="user",
            target_id=self._user(),
            metadata={"reason": reason, "permanent": True},
        )

    def delete_account(self) -> dict[str, Any]:
        user = self._user()
        return self._base(
            "user.delete",
            user,
            category="critical",
            target_type="user",
            target_id=user,
            metadata={"requested_by": "user", "gdpr": True},
        )

    def ownership_transfer(self) -> dict[str, Any]:
        owner = self._admin()
        return self._base(
            "org.ownership_transfer",
            owner,
            category="critical",
            target_type="tenant",
            target_id=self.tenant_of[owner],
            metadata={"to": self._user()},
        )

    def brute_force(self) -> list[dict[str, Any]]:
        """Failed logins on one account from one address, then the account locked."""
        victim, attacker_ip = self._user(), self._ip()
        attempts = [self.failed_login(victim, attacker_ip) for _ in range(self.rng.randint(5, 12))]
        lock = {
            "action": "user.lock",
            "category": "critical",
            "actor_type": "system",
            "actor_id": "auth.rate_limiter",
            "target_type": "user",
            "target_id": victim,
            "tenant_id": self.tenant_of[victim],
            "ip": attacker_ip,
            "outcome": "success",
            "metadata": {"failed_attempts": len(attempts), "window_seconds": 60},
        }
        return [*attempts, lock]

    # --- streams of events -------------------------------------------------------------------

    def showcase(self) -> list[dict[str, Any]]:
        """One event of every kind, and one brute-force burst."""
        return [kind() for kind in self._kinds] + self.brute_force()

    def events(self, count: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while len(out) < count:
            if self._pending:
                out.append(self._pending.popleft())
            elif self.rng.random() < BURST_CHANCE:
                self._pending.extend(self.brute_force())
            else:
                out.append(self.rng.choices(self._kinds, self._weights)[0]())
        return out

    def malformed(self) -> dict[str, str]:
        entry = MALFORMED[self._malformed % len(MALFORMED)]
        self._malformed += 1
        return entry


def run(
    client: AuditClient,
    rate: float,
    *,
    duration: float | None = None,
    stop: threading.Event | None = None,
    malformed_every: float = 30.0,
    report_every: float = 10.0,
    seed: int | None = None,
) -> Counter[str]:
    """Send demo traffic until ``stop`` is set or ``duration`` seconds have passed.

    Returns counts: ``sent`` and one key per client outcome (queued, written, deferred,
    dropped), ``malformed`` (entries written with XADD) and ``errors``.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    stop = stop or threading.Event()
    traffic = DemoTraffic(random.Random(seed))
    totals: Counter[str] = Counter()
    tick = min(0.1, 1 / rate)

    def send(events: list[dict[str, Any]]) -> None:
        try:
            results = client.log_many(events)
        except AuditUnavailable as error:  # critical events found neither store nor Redis
            log.warning("demo: %s", error)
            totals["errors"] += len(events)
            return
        totals["sent"] += len(events)
        totals.update(result.outcome for result in results)

    def send_malformed() -> None:
        try:
            client.redis.xadd(client.keys.stream, traffic.malformed())
        except redis.RedisError as error:
            log.warning("demo: could not write a malformed entry: %s", type(error).__name__)
            totals["errors"] += 1
            return
        totals["malformed"] += 1

    start = last = time.monotonic()
    send(traffic.showcase())
    send_malformed()
    next_malformed, next_report = start + malformed_every, start + report_every
    owed = 0.0
    while not stop.is_set():
        now = time.monotonic()
        if duration is not None and now - start >= duration:
            break
        owed += (now - last) * rate
        last = now
        count = int(owed)
        if count:
            owed -= count
            send(traffic.events(count))
        if now >= next_malformed:
            send_malformed()
            next_malformed += malformed_every
        if now >= next_report:
            log.info("demo: %s", _summary(totals))
            next_report += report_every
        stop.wait(tick)
    return totals


def _summary(totals: Counter[str]) -> str:
    outcomes = ", ".join(
        f"{name} {totals[name]}" for name in ("queued", "written", "deferred", "dropped")
    )
    return f"{totals['sent']} events sent ({outcomes}), {totals['malformed']} malformed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=50.0, help="events per second (default: 50)")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument(
        "--malformed-every",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="write one malformed entry this often (default: 30)",
    )
    parser.add_argument("--seed", type=int, default=None, help="for repeatable traffic")


def main(args: argparse.Namespace) -> int:
    if args.rate <= 0 or args.malformed_every <= 0:
        raise SystemExit("auditq demo: --rate and --malformed-every must be positive")
    client = AuditClient.from_env()
    try:
        client.redis.ping()
    except redis.RedisError as error:
        log.error("demo: cannot reach Redis (%s); is REDIS_URL right?", type(error).__name__)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info("demo: about %g events/s to %s", args.rate, client.keys.stream)
    try:
        totals = run(
            client,
            args.rate,
            duration=args.duration,
            stop=stop,
            malformed_every=args.malformed_every,
            seed=args.seed,
        )
    finally:
        client.close()
    log.info("demo: done, %s", _summary(totals))
    return 0
