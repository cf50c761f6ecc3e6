"""The commands end to end (`retention`, `verify --archive`, `restore`: exit codes and what
they print), on file:// and on s3://.

No real object store runs on these machines: moto's standalone server (a real HTTP server
speaking the S3 protocol, started here) stands in for one, reached by boto3 over the network
exactly as AWS S3, Supabase Storage's S3 endpoint or R2 would be."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import boto3
import pytest
from moto.server import ThreadedMotoServer

from auditq.seals.sealer import seal_pass
from tests.auditq.retention.helpers import month_events, partitions
from tests.auditq.seals.helpers import events

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3_endpoint():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def old_months(clean_db, signer):
    from auditq.stores.postgres import PostgresStore

    store = PostgresStore(clean_db, timeout=5)
    store.insert_events(month_events([(2020, 1)], 3) + month_events([(2020, 2)], 2))
    store.insert_events(events(2))
    seal_pass(store, signer, grace=0)
    store.close()


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "auditq", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def base_env(clean_db, key_pair, archive_url, **extra) -> dict[str, str]:
    # 2020 is more than 365 days ago: January and February 2020 are due.
    return {
        "DATABASE_URL": clean_db,
        "AUDITQ_RETENTION_DAYS": "365",
        "AUDITQ_ARCHIVE_URL": archive_url,
        "AUDITQ_SEAL_PUBLIC_KEY": key_pair.public,
        **extra,
    }


@pytest.mark.parametrize("where", ["file", "s3"])
def test_retention_verify_archive_and_restore_commands(
    where, old_months, clean_db, key_pair, tmp_path, s3_endpoint
):
    if where == "s3":
        bucket = f"auditq-{tmp_path.name[-12:].lower().replace('_', '-')}"
        boto3.client("s3", endpoint_url=s3_endpoint, **_creds()).create_bucket(Bucket=bucket)
        url = f"s3://{bucket}/audit"
        env = base_env(clean_db, key_pair, url, AUDITQ_S3_ENDPOINT=s3_endpoint, **S3_ENV)
    else:
        url = f"file://{tmp_path}/arch"
        env = base_env(clean_db, key_pair, url)

    dry = run("retention", "--dry-run", "--json", **env)
    assert dry.returncode == 0, dry.stderr
    assert [m["month"] for m in json.loads(dry.stdout)["months"]] == ["2020-01", "2020-02"]

    done = run("retention", **env)
    assert done.returncode == 0, done.stderr
    assert "2020-01: 3 row(s): dropped" in done.stdout
    assert "audit_logs_y2020m01" not in partitions(clean_db)

    # Offline: no DATABASE_URL at all.
    offline_env = {k: v for k, v in env.items() if k != "DATABASE_URL"}
    checked = run("verify", "--archive", url, "--json", **{**offline_env, "DATABASE_URL": ""})
    assert checked.returncode == 0, checked.stderr + checked.stdout
    report = json.loads(checked.stdout)
    assert report["ok"] and report["rows"] == 5 and len(report["parts"]) == 2

    table = run("verify", "--json", **env)
    assert table.returncode == 0, table.stdout
    assert json.loads(table.stdout)["archived"] == 5

    restored = run("restore", url, "--month", "2020-02", **env)
    assert restored.returncode == 0, restored.stderr
    assert "2 row(s) imported" in restored.stdout
    assert partitions(clean_db)["audit_logs_y2020m02"] == 2
    assert run("verify", **env).returncode == 0


def test_verify_archive_exit_codes(old_months, clean_db, key_pair, tmp_path):
    url = f"file://{tmp_path}/arch"
    env = base_env(clean_db, key_pair, url)
    assert run("retention", **env).returncode == 0
    rows = tmp_path / "arch" / "2020-01" / "part-001" / "rows.ndjson.gz"
    rows.write_bytes(rows.read_bytes()[:-4] + b"\0\0\0\0")  # damaged
    bad = run("verify", "--archive", url, **env)
    assert bad.returncode in (1, 2)
    missing = run("verify", "--archive", f"file://{tmp_path}/nothing-here", **env)
    assert missing.returncode == 2 and "no archived month" in missing.stderr


def test_retention_with_only_supabase_url_exits_2(postgrest, tmp_path):
    result = run(
        "retention",
        SUPABASE_URL=postgrest.url,
        SUPABASE_SERVICE_ROLE_KEY=postgrest.service_key,
        DATABASE_URL="",
        AUDITQ_RETENTION_DAYS="30",
        AUDITQ_ARCHIVE_URL=f"file://{tmp_path}/arch",
    )
    assert result.returncode == 2
    assert "needs DATABASE_URL (only SUPABASE_URL is set)" in result.stderr


def test_an_unreachable_s3_endpoint_drops_nothing(old_months, clean_db, key_pair):
    env = base_env(
        clean_db, key_pair, "s3://nowhere/audit", AUDITQ_S3_ENDPOINT="http://127.0.0.1:9", **S3_ENV
    )
    result = run("retention", **env)
    assert result.returncode == 2 and "s3://nowhere/audit: EndpointConnectionError" in result.stderr
    assert partitions(clean_db)["audit_logs_y2020m01"] == 3


def _creds() -> dict[str, str]:
    return {
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "region_name": "us-east-1",
    }
