"""``python -m auditq erase --actor ID``: erasure from the command line.

Exit 0 when the subject's data key was destroyed, 1 when there was none (an unknown
subject, or erased already: nothing changed), 2 when it could not run.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from auditq.client import AuditClient, AuditUnavailable
from auditq.config import load_settings
from auditq.pii.erase import erase_event, erase_subject
from auditq.stores import StoreError, open_store

EXIT_OK, EXIT_UNKNOWN, EXIT_ERROR = 0, 1, 2


def add_commands(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "erase", help="destroy an actor's data key: their personal fields become unreadable"
    )
    parser.add_argument("--actor", required=True, help="the actor_id whose data is erased")
    parser.set_defaults(run=erase_command)


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
