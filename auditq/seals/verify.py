"""Verify the seals against the table: rows, seals, chain, signatures, head.

It reads through either store in pages (seals SEAL_PAGE at a time, rows ROW_PAGE at a time
by keyset), so memory stays bounded by one page of seals plus one seal's leaves
(MAX_ROWS x 48 bytes), however many rows the table holds.

For each seal, in order:
- its number follows the previous one and its prev_hash is the previous seal's hash, and
  its range starts where the previous one ended (else ``broken_link``);
- its hash is the hash of its header, its root the root of its leaves and its row count
  their number (else ``bad_seal``), and its signature verifies with the configured public
  key (else ``bad_signature``);
- the rows now in its txid range, hashed here, match its leaves one for one: a leaf with no
  row is ``missing``, a row with no leaf ``unexpected``, a different hash ``modified``.
Rows past the newest seal are counted as unsealed (not a finding: the next pass seals them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from auditq.seals import canonical
from auditq.seals.signing import Checker
from auditq.stores import Store

SEAL_PAGE = 16
ROW_PAGE = 2000


class NoSeals(Exception):
    """The database holds no seal: nothing was verified (exit 2, never "intact")."""


@dataclass(frozen=True)
class Finding:
    kind: str  # modified | missing | unexpected | broken_link | bad_seal | bad_signature | head
    seal_no: int | None
    row_id: str | None
    detail: str

    def __str__(self) -> str:
        where = f"seal {self.seal_no}" if self.seal_no is not None else "chain"
        row = f" row {self.row_id}" if self.row_id else ""
        return f"{self.kind}: {where}{row}: {self.detail}"


@dataclass
class Report:
    rows: int = 0  # rows checked against seals
    seals: int = 0
    unsealed: int = 0
    head: str | None = None  # hex hash of the newest seal
    head_seal_no: int | None = None
    findings: list[Finding] = field(default_factory=list)
    truncated: int = 0  # findings beyond MAX_FINDINGS, counted only

    @property
    def ok(self) -> bool:
        return not self.findings and not self.truncated

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "seals": self.seals,
            "unsealed": self.unsealed,
            "head": self.head,
            "head_seal_no": self.head_seal_no,
            "findings": [asdict(f) for f in self.findings],
            "more_findings": self.truncated,
        }


MAX_FINDINGS = 1000  # listed; past it they are counted (a wiped table must not fill memory)


def verify(
    store: Store,
    checker: Checker,
    *,
    since: datetime | None = None,
    expect_head: str | None = None,
) -> Report:
    """Check everything sealed (row checks only for seals made at or after ``since``)."""
    report = Report()
    previous: dict[str, Any] | None = None
    expected_seen = expect_head is None
    for seal in _seals(store, with_leaves=since is None):
        if since is not None and seal["sealed_at"] >= since and "leaves" not in seal:
            # From here on rows are checked: read this seal again with its leaves.
            seal = store.list_seals(seal["seal_no"] - 1, 1, leaves=True)[0]
        report.seals += 1
        _check_link(report, previous, seal)
        _check_seal(report, checker, seal)
        if "leaves" in seal:
            _check_rows(report, store, seal)
        if expect_head is not None and seal["hash"].hex() == expect_head.lower():
            expected_seen = True
        previous = seal
    if previous is None:
        raise NoSeals("no seals in public.audit_seals: nothing has been sealed yet")
    report.head = previous["hash"].hex()
    report.head_seal_no = previous["seal_no"]
    report.unsealed = store.unsealed(previous["to_txid"])[0]
    if not expected_seen:
        _add(report, "head", None, None, f"expected head {expect_head} is not in the chain")
    return report


def _seals(store: Store, with_leaves: bool) -> Iterator[dict[str, Any]]:
    after = 0
    while True:
        page = store.list_seals(after, SEAL_PAGE, leaves=with_leaves)
        yield from page
        if len(page) < SEAL_PAGE:
            return
        after = page[-1]["seal_no"]


def _check_link(report: Report, previous: dict[str, Any] | None, seal: dict[str, Any]) -> None:
    no = seal["seal_no"]
    if previous is None:
        first = seal["total_rows"] == seal["row_count"] and seal["from_txid"] == 0
        if no == 1 and seal["prev_hash"] == canonical.GENESIS and first:
            return
        # With a --since cut the first seal read is still seal 1: history is read whole.
        _add(report, "broken_link", no, None, "the chain does not start at seal 1")
        return
    if no != previous["seal_no"] + 1:
        _add(report, "broken_link", no, None, f"follows seal {previous['seal_no']}: seals missing")
    if seal["prev_hash"] != previous["hash"]:
        _add(report, "broken_link", no, None, f"prev_hash is not seal {previous['seal_no']}'s hash")
    if seal["from_txid"] != previous["to_txid"]:
        _add(report, "broken_link", no, None, "its txid range does not start where the last ended")
    if seal["total_rows"] != previous["total_rows"] + seal["row_count"]:
        _add(report, "broken_link", no, None, "its running row total does not follow the last")


def _check_seal(report: Report, checker: Checker, seal: dict[str, Any]) -> None:
    no = seal["seal_no"]
    if canonical.seal_hash(seal) != seal["hash"]:
        _add(report, "bad_seal", no, None, "its hash does not match its contents")
    if "leaves" in seal:
        leaves = seal["leaves"]
        if len(leaves) != seal["row_count"] * canonical.LEAF_SIZE:
            _add(report, "bad_seal", no, None, "its row count does not match its leaves")
        elif canonical.root(leaves) != seal["root"]:
            _add(report, "bad_seal", no, None, "its root does not match its leaves")
    if not checker.valid(seal["hash"], seal["signature"]):
        _add(report, "bad_signature", no, None, "signature does not verify with the public key")


def _check_rows(report: Report, store: Store, seal: dict[str, Any]) -> None:
    no = seal["seal_no"]
    expected = canonical.split_leaves(seal["leaves"])
    after = None
    while True:
        page = store.sealable_rows(seal["from_txid"], seal["to_txid"], after, ROW_PAGE)
        for row in page:
            row_id = str(row["id"])
            report.rows += 1
            sealed = expected.pop(row_id, None)
            if sealed is None:
                _add(
                    report,
                    "unexpected",
                    no,
                    row_id,
                    "row inside a sealed range that it does not cover",
                )
            elif sealed != canonical.row_hash(row):
                _add(report, "modified", no, row_id, "row differs from what was sealed")
        if len(page) < ROW_PAGE:
            break
        after = (int(page[-1]["txid"]), str(page[-1]["id"]))
    for row_id in expected:
        _add(report, "missing", no, row_id, "sealed row is not in the table")


def _add(report: Report, kind: str, seal_no: int | None, row_id: str | None, detail: str) -> None:
    if len(report.findings) >= MAX_FINDINGS:
        report.truncated += 1
        return
    report.findings.append(Finding(kind, seal_no, row_id, detail))
