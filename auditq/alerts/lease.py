"""Who evaluates: one process at a time, also while Redis or the store is down.

Every web and worker process runs the evaluator; two leases decide which one evaluates:

- a Redis lease (``auditq.lease.RedisLease``, shared with the sealer),
- a lease row in the store (``alert_take_lease()``, the same in SQL and over PostgREST).

A process leads while it holds **every lease whose backend answers**; it renews both on
every run. If it takes one and is refused the other, it lets the one it took go, so the
holder of the other takes both on its next run (no deadlock, no two leaders). So:

- Redis down: the process holding the store lease (the leader so far) goes on alone.
- store down: the process holding the Redis lease goes on alone.
- both down: nobody can be asked, nobody can take over; the process that led at its last
  run goes on (with what it remembers), every other process stays idle. A process that
  was not leading does not start. (A network split that cuts only the leader off both
  would give two leaders until it heals; one datacenter's outages do not.)

A holder that dies lets go after ``ttl`` seconds (the leases expire); a clean exit
releases both at once.
"""

from __future__ import annotations

import contextlib
import logging

import redis

from auditq.alerts.repo import Repo
from auditq.lease import RedisLease
from auditq.stores import StoreError

log = logging.getLogger(__name__)


class StoreLease:
    """The same lease as a row in the store (the database's clock decides expiry)."""

    def __init__(self, repo: Repo, name: str, ttl: float, token: str):
        self.repo = repo
        self.name = name
        self.ttl = ttl
        self.token = token

    def acquire(self) -> bool:
        return self.repo.take_lease(self.name, self.token, self.ttl)

    def release(self) -> None:
        self.repo.release_lease(self.name, self.token)


_UNREACHABLE = (redis.RedisError, StoreError)


class Leadership:
    """Leads while holding every lease whose backend answers (see the module docstring)."""

    def __init__(self, *leases: RedisLease | StoreLease):
        self.leases = leases
        self.leading = False

    @property
    def token(self) -> str:
        return self.leases[0].token

    def acquire(self) -> bool:
        """Take or renew; True if this process is to evaluate now."""
        answers: list[bool | None] = []
        for lease in self.leases:
            try:
                answers.append(lease.acquire())
            except _UNREACHABLE as error:
                log.debug("alerts: lease %s unreachable: %s", type(lease).__name__, error)
                answers.append(None)
        reachable = [answer for answer in answers if answer is not None]
        if not reachable:
            leading = self.leading  # nobody can be asked: the last leader carries on
        else:
            leading = all(reachable)
            if not leading:
                self._release(lease for lease, a in zip(self.leases, answers, strict=True) if a)
        if leading != self.leading:
            log.info("alerts: this process %s evaluating", "starts" if leading else "stops")
        self.leading = leading
        return leading

    def release(self) -> None:
        self.leading = False
        self._release(self.leases)

    @staticmethod
    def _release(leases) -> None:
        for lease in leases:
            with contextlib.suppress(*_UNREACHABLE):  # it expires on its own
                lease.release()
