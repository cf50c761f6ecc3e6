"""One seal pass: seal every final, grace-aged row that no seal covers yet, seal by seal.

Each seal is one INSERT, so a sealer killed mid-pass leaves either a whole seal or none.
Two sealers racing build the same next seal number on the same previous hash; the primary
key and the unique ``prev_hash`` let one in, and the other stops its pass.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from auditq.seals import canonical
from auditq.seals.signing import Signer
from auditq.stores import Store

log = logging.getLogger(__name__)

MAX_ROWS = 10_000  # rows per seal: bounds a seal's size and what verify holds at once
PASS_BUDGET = 20.0  # seconds one pass keeps sealing while there is more to seal


@dataclass(frozen=True)
class PassResult:
    seals: int
    rows: int
    head: bytes | None  # hash of the newest seal written by this pass


def seal_pass(
    store: Store,
    signer: Signer,
    grace: float,
    *,
    max_rows: int = MAX_ROWS,
    budget: float = PASS_BUDGET,
) -> PassResult:
    deadline = time.monotonic() + budget
    seals = rows = 0
    head = None
    while time.monotonic() < deadline:
        seal = seal_once(store, signer, grace, max_rows=max_rows)
        if seal is None:
            break
        seals += 1
        rows += seal["row_count"]
        head = seal["hash"]
    if seals:
        log.info("sealed seals=%d rows=%d head=%s", seals, rows, head.hex() if head else "")
    return PassResult(seals, rows, head)


def seal_once(
    store: Store, signer: Signer, grace: float, *, max_rows: int = MAX_ROWS
) -> dict[str, Any] | None:
    """Write the next seal; None when there is nothing to seal or another sealer won."""
    last = store.last_seal()
    horizon, db_now = store.seal_horizon()
    start = last["to_txid"] if last else 0
    if horizon <= start:
        return None
    cutoff = db_now - timedelta(seconds=grace)
    end, count, leaves = store.seal_next(start, horizon, cutoff, max_rows)
    if count == 0:
        return None
    seal: dict[str, Any] = {
        "seal_no": last["seal_no"] + 1 if last else 1,
        "prev_hash": last["hash"] if last else canonical.GENESIS,
        "from_txid": start,
        "to_txid": end,
        "row_count": count,
        "total_rows": (last["total_rows"] if last else 0) + count,
        "root": canonical.root(leaves),
        "sealed_at": db_now,
        "public_key": signer.public_key,
        "leaves": leaves,
    }
    seal["hash"] = canonical.seal_hash(seal)
    seal["signature"] = signer.sign(seal["hash"])
    if not store.add_seal(seal):
        log.info("seal %d taken by another sealer; stopping this pass", seal["seal_no"])
        return None
    return seal
