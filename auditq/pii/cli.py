"""``python -m auditq erase --actor ID`` and ``pii-rewrap``.

erase exits 0 when the subject's data key was destroyed, 1 when there was none (an unknown
subject, or erased already: nothing changed), 2 when it could not run. pii-rewrap (a
rotation of AUDITQ_PII_KEY, auditq/pii/rotate.py) exits 0 when every data key is under the
new key, 1 when some opened with neither key, 2 when it could not run.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from auditq.client import AuditClient, AuditUnavailable
from auditq.config import load_settings
from auditq.pii.erase import erase_event, erase_subject
from auditq.pii.rotate import rewrap_all
from auditq.stores import StoreError, open_store

EXIT_OK, EXIT_UNKNOWN, EXIT_ERROR = 0, 1, 2


def add_commands(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "erase", help="destroy an actor's data key: their personal fields become unreadable"
    )
    parser.add_argument("--actor", required=True, help="the actor_id whose data is erased")
    parser.set_defaults(run=erase_command)
    commands.add_parser(
        "pii-rewrap", help="rewrap every data key from AUDITQ_PII_OLD_KEY to AUDITQ_PII_KEY"
    ).set_defaults(run=rewrap_command)


def rewrap_command(_args: argparse.Namespace) -> int:
    settings = load_settings()
    if settings.pii_key is None:
        print("auditq pii-rewrap: AUDITQ_PII_KEY is not set", file=sys.stderr)
        return EXIT_ERROR
    store = open_store(settings)
    if store is None:
        print("auditq: no store configured (set SUPABASE_URL or DATABASE_URL)", file=sys.stderr)
        return EXIT_ERROR
    try:
        counts = rewrap_all(store, settings)
    except StoreError as error:
        print(f"auditq pii-rewrap: could not rewrap: {error}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        store.close()
    print(f"rewrapped {counts.rewrapped} data key(s); {counts.current} already under"
          f" AUDITQ_PII_KEY; {counts.unreadable} under neither key")  # fmt: skip
    return EXIT_OK if not counts.unreadable else EXIT_UNKNOWN


def erase_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    store = open_store(settings)
    if store is None:
        print("auditq: no store configured (set SUPABASE_URL or DATABASE_URL)", file=sys.stderr)
        return EXIT_ERROR
    try:
        erased = erase_subject(store, args.actor)
    except StoreError as error:
        print(f"auditq erase: could not erase: {error}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        store.close()
    if not erased:
        print(f"auditq erase: no personal data key for actor {args.actor!r} (unknown, or"
              " erased already): nothing changed")  # fmt: skip
        return EXIT_UNKNOWN
    # Who erased which subject, and nothing of what was erased.
    audit = AuditClient(settings)
    try:
        audit.log(**erase_event(args.actor, actor_type="cli", actor_id=_user()))
    except AuditUnavailable:
        print("auditq erase: erased, but the erasure could not be audit-logged", file=sys.stderr)
    finally:
        audit.close()
    print(f"erased the personal fields of actor {args.actor!r}: their events stay, sealed")
    return EXIT_OK


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "unknown"
