"""The archive of one month of audit_logs, and reading it back.

Layout under AUDITQ_ARCHIVE_URL, one directory per month and part::

    2026-01/part-001/rows.ndjson.gz   every row, one per line, in (txid, id) order
    2026-01/part-001/manifest.json    written last: its presence means the part is whole

A line is the row's canonical text (``public.audit_row_canonical``: the JSON array of
auditq.seals.canonical.SEALED_COLUMNS, every column, canonical values), so its row hash is
SHA-256("auditq/row/v1" NUL + line) and it checks against a seal's leaf with no database.
The manifest holds the counts, the file's SHA-256, and a copy of every seal that covers a
row of the part, leaves included (verify --archive checks rows, seals, signatures offline).

A month is normally one part. A later part appears only when rows of an already dropped
month arrive again (a late event, a restore) and retention archives them in turn.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from auditq.retention.destinations import Destination
from auditq.seals import canonical

FORMAT = "auditq-archive/v1"
ROWS_FILE = "rows.ndjson.gz"
MANIFEST = "manifest.json"
_ROW = b"auditq/row/v1\0"


def part_prefix(month: str, part: int) -> str:
    return f"{month}/part-{part:03d}/"


@dataclass(frozen=True)
class ArchiveRow:
    id: str
    txid: int
    hash: bytes


def row_of(line: bytes) -> ArchiveRow:
    values = json.loads(line)
    ids = canonical.SEALED_COLUMNS
    return ArchiveRow(
        id=values[ids.index("id")],
        txid=int(values[ids.index("txid")]),
        hash=hashlib.sha256(_ROW + line).digest(),
    )


def write_part(
    destination: Destination,
    month: str,
    part: int,
    partition: str,
    lines: Iterable[bytes],
    seals: Iterable[dict[str, Any]],
) -> tuple[dict[str, Any], bytes]:
    """Write the rows, then the manifest; return the manifest and its bytes."""
    prefix = part_prefix(month, part)
    digest = hashlib.sha256()
    count = 0
    with tempfile.TemporaryFile() as spool:
        # mtime=0: the same rows always make the same bytes (and the same SHA-256).
        with gzip.GzipFile(fileobj=spool, mode="wb", mtime=0) as out:
            for line in lines:
                out.write(line + b"\n")
                count += 1
        size = spool.tell()
        spool.seek(0)
        while chunk := spool.read(1 << 20):
            digest.update(chunk)
        spool.seek(0)
        destination.put_file(prefix + ROWS_FILE, spool)
    manifest = {
        "format": FORMAT,
        "month": month,
        "part": part,
        "partition": partition,
        "columns": list(canonical.SEALED_COLUMNS),
        "rows": count,
        "files": [{"name": ROWS_FILE, "rows": count, "bytes": size, "sha256": digest.hexdigest()}],
        "seals": [seal_to_json(seal) for seal in seals],
        "created_at": datetime.now(UTC).isoformat(),
    }
    body = json.dumps(manifest, indent=1).encode()
    with tempfile.TemporaryFile() as spool:
        spool.write(body)
        spool.seek(0)
        destination.put_file(prefix + MANIFEST, spool)
    return manifest, body


def seal_to_json(seal: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in seal.items():
        if key == "leaves":
            out[key] = base64.b64encode(value).decode()
        elif isinstance(value, bytes | memoryview):
            out[key] = bytes(value).hex()
        elif isinstance(value, datetime):
            out[key] = value.isoformat()
        else:
            out[key] = value
    return out


def seal_from_json(raw: dict[str, Any]) -> dict[str, Any]:
    from auditq.stores.seals import seal_record

    out = dict(raw)
    for key in ("prev_hash", "root", "public_key", "hash", "signature"):
        out[key] = bytes.fromhex(raw[key])
    out["leaves"] = base64.b64decode(raw["leaves"])
    return seal_record(out)


class BadArchive(Exception):
    """A part that cannot be read as one: no manifest, a file missing or not what it says."""


@dataclass
class Part:
    prefix: str
    manifest: dict[str, Any]
    manifest_sha256: bytes
    rows_gz: bytes

    @property
    def seals(self) -> list[dict[str, Any]]:
        return [seal_from_json(seal) for seal in self.manifest["seals"]]

    def lines(self) -> Iterator[bytes]:
        """The rows' lines, decompressed as they are read (a month never sits uncompressed
        in memory)."""
        with gzip.GzipFile(fileobj=io.BytesIO(self.rows_gz)) as rows:
            for line in rows:
                yield line.rstrip(b"\n")

    def problems(self) -> list[str]:
        """What is wrong with the files themselves (hash, counts), checked on read-back."""
        entry = self.manifest["files"][0]
        found = []
        if hashlib.sha256(self.rows_gz).hexdigest() != entry["sha256"]:
            found.append(f"{self.prefix}{ROWS_FILE}: SHA-256 differs from the manifest")
        count = sum(1 for _ in self.lines())
        if count != entry["rows"] or count != self.manifest["rows"]:
            found.append(f"{self.prefix}{ROWS_FILE}: {count} rows, manifest says {entry['rows']}")
        return found


def read_part(destination: Destination, prefix: str) -> Part:
    body = destination.get(prefix + MANIFEST)
    if body is None:
        raise BadArchive(f"{prefix}{MANIFEST} is missing")
    try:
        manifest = json.loads(body)
    except ValueError:
        raise BadArchive(f"{prefix}{MANIFEST} is not JSON") from None
    if manifest.get("format") != FORMAT:
        raise BadArchive(f"{prefix}{MANIFEST}: not an {FORMAT} manifest")
    rows_gz = destination.get(prefix + ROWS_FILE)
    if rows_gz is None:
        raise BadArchive(f"{prefix}{ROWS_FILE} is missing")
    return Part(prefix, manifest, hashlib.sha256(body).digest(), rows_gz)


def part_prefixes(destination: Destination, month: str | None = None) -> list[str]:
    """The prefix of every whole part (its manifest written), oldest month first."""
    return [
        name.removesuffix(MANIFEST)
        for name in destination.names(f"{month}/" if month else "")
        if name.endswith("/" + MANIFEST)
    ]
