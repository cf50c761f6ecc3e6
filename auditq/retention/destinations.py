"""Where archives go: a directory (``file:///path``) or an S3-compatible bucket
(``s3://bucket/prefix``: AWS S3, Supabase Storage's S3 endpoint, Cloudflare R2, MinIO).

Both offer the same four calls on names relative to the URL (``2026-01/part-001/...``).
Any failure to reach or write the destination is an ArchiveUnavailable, so a pass can stop
before dropping anything and try again next time.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import unquote, urlsplit


class ArchiveUnavailable(Exception):
    """The archive destination could not be read or written."""


class Destination(Protocol):
    url: str

    def put_file(self, name: str, source: IO[bytes]) -> None: ...
    def get(self, name: str) -> bytes | None:
        """The object's bytes, or None when there is none by that name."""
        ...

    def names(self, under: str = "") -> list[str]:
        """Every name under a prefix, sorted."""
        ...


class FileDestination:
    def __init__(self, url: str):
        self.url = url
        self.root = Path(unquote(urlsplit(url).path))

    def put_file(self, name: str, source: IO[bytes]) -> None:
        # Written beside the target and renamed over it: a reader never sees half a file.
        target = self.root / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as out:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(out.name, target)
        except OSError as error:
            raise ArchiveUnavailable(f"cannot write {self.url}: {error.strerror}") from None

    def get(self, name: str) -> bytes | None:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise ArchiveUnavailable(f"cannot read {self.url}: {error.strerror}") from None

    def names(self, under: str = "") -> list[str]:
        base = self.root / under
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file())


class S3Destination:
    def __init__(self, url: str, endpoint: str | None):
        import boto3
        from botocore.config import Config

        parts = urlsplit(url)
        self.url = url
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            config=Config(retries={"max_attempts": 2}, connect_timeout=10, read_timeout=60),
        )

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def put_file(self, name: str, source: IO[bytes]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.upload_fileobj(source, self.bucket, self._key(name))
        except (BotoCoreError, ClientError) as error:
            raise ArchiveUnavailable(f"cannot write {self.url}: {_reason(error)}") from None

    def get(self, name: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise ArchiveUnavailable(f"cannot read {self.url}: {_reason(error)}") from None
        except BotoCoreError as error:
            raise ArchiveUnavailable(f"cannot read {self.url}: {_reason(error)}") from None

    def names(self, under: str = "") -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        start = self._key(under)
        cut = len(self.prefix) + 1 if self.prefix else 0
        found: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start
            )
            for page in pages:
                found += [item["Key"][cut:] for item in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as error:
            raise ArchiveUnavailable(f"cannot list {self.url}: {_reason(error)}") from None
        return sorted(found)


def _reason(error: Exception) -> str:
    # The class name and S3's error code: never the request, which may carry credentials.
    code = getattr(error, "response", {}).get("Error", {}).get("Code")
    return f"{type(error).__name__}{f' {code}' if code else ''}"


def open_destination(url: str, s3_endpoint: str | None = None) -> Destination:
    scheme = urlsplit(url).scheme
    if scheme == "file":
        return FileDestination(url)
    if scheme == "s3":
        return S3Destination(url, s3_endpoint)
    raise ValueError(f"unsupported archive URL scheme {scheme!r}: use file:// or s3://")
