"""``python -m auditq seal | verify | keygen``.

verify exits 0 when intact, 1 on any finding, 2 when it could not run (no store, no key,
no seals, database unreachable).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from auditq.config import load_settings
from auditq.seals import signing
from auditq.stores import Store, StoreError, open_store

T = TypeVar("T")

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def add_commands(commands: argparse._SubParsersAction) -> None:
    commands.add_parser(
        "seal", help="seal the rows no seal covers yet (one pass now)"
    ).set_defaults(run=seal_command)
    verify_parser = commands.add_parser(
        "verify", help="check rows, seals, chain and signatures (exit 0 intact, 1 findings)"
    )
    verify_parser.add_argument("--json", action="store_true", help="print one JSON object")
    verify_parser.add_argument(
        "--since", type=_aware_time, help="check rows of seals made at or after this time"
    )
    verify_parser.add_argument(
        "--expect-head", metavar="HASH", help="fail unless this seal hash is in the chain"
    )
    verify_parser.set_defaults(run=verify_command)
    commands.add_parser("keygen", help="print a new Ed25519 seal key pair").set_defaults(
        run=keygen_command
    )


def seal_command(_args: argparse.Namespace) -> int:
    from auditq.seals.sealer import seal_pass

    settings = load_settings()
    signer = signing.signer(settings)
    result = _with_store(
        settings, "seal", lambda store: seal_pass(store, signer, settings.seal_grace)
    )
    if result is None:
        return EXIT_ERROR
    head = result.head.hex() if result.head else "unchanged"
    print(f"sealed {result.rows} row(s) in {result.seals} seal(s); head {head}")
    return EXIT_OK


def verify_command(args: argparse.Namespace) -> int:
    from auditq.seals.verify import verify

    settings = load_settings()
    checker = signing.checker(settings)
    report = _with_store(
        settings,
        "verify",
        lambda store: verify(store, checker, since=args.since, expect_head=args.expect_head),
    )
    if report is None:
        return EXIT_ERROR
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        for finding in report.findings:
            print(finding)
        if report.truncated:
            print(f"... and {report.truncated} more finding(s)")
        state = "intact" if report.ok else "FINDINGS"
        print(
            f"{state}: {report.rows} row(s) in {report.seals} seal(s), "
            f"{report.unsealed} not sealed yet; head {report.head}"
        )
    return EXIT_OK if report.ok else EXIT_FINDINGS


def keygen_command(_args: argparse.Namespace) -> int:
    pair = signing.generate()
    print(f"AUDITQ_SEAL_KEY={pair.private}")
    print(f"AUDITQ_SEAL_PUBLIC_KEY={pair.public}")
    return EXIT_OK


def _with_store(settings, command: str, work: Callable[[Store], T]) -> T | None:
    """Run ``work`` on the configured store; None (after saying why) when it could not."""
    from auditq.seals.verify import NoSeals

    store = open_store(settings)
    if store is None:
        print("auditq: no store configured (set SUPABASE_URL or DATABASE_URL)", file=sys.stderr)
        return None
    try:
        return work(store)
    except (NoSeals, StoreError) as error:
        print(f"auditq {command}: could not {command}: {error}", file=sys.stderr)
        return None
    finally:
        store.close()


def _aware_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2026-11-29T00:00:00Z")
    return value
