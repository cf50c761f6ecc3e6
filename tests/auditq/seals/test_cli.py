"""``python -m auditq seal | verify | keygen``: exit codes, output, and bad keys."""

from __future__ import annotations

import json

import psycopg
import pytest

from auditq.__main__ import main
from auditq.config import ConfigError, load_settings
from auditq.seals import signing
from auditq.stores.postgres import PostgresStore
from tests.auditq.seals.helpers import events, superuser


@pytest.fixture
def env(monkeypatch, clean_db, key_pair):
    for name in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "AUDITQ_SEAL_PUBLIC_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", clean_db)
    monkeypatch.setenv("AUDITQ_SEAL_KEY", key_pair.private)
    monkeypatch.setenv("AUDITQ_SEAL_GRACE", "0")
    return monkeypatch


def stored(dsn, n):
    store = PostgresStore(dsn)
    batch = events(n)
    store.insert_events(batch)
    store.close()
    return batch


def test_seal_then_verify_json(env, clean_db, capsys):
    stored(clean_db, 12)
    assert main(["seal"]) == 0
    assert "sealed 12 row(s) in 1 seal(s)" in capsys.readouterr().out
    assert main(["verify", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["rows"] == 12 and out["seals"] == 1
    assert out["findings"] == [] and len(out["head"]) == 64
    assert main(["verify", "--expect-head", out["head"]]) == 0
    assert main(["verify", "--expect-head", "00" * 32]) == 1


def test_verify_with_only_the_public_key_and_findings_exit_1(env, clean_db, key_pair, capsys):
    batch = stored(clean_db, 4)
    assert main(["seal"]) == 0
    env.delenv("AUDITQ_SEAL_KEY")
    env.setenv("AUDITQ_SEAL_PUBLIC_KEY", key_pair.public)
    with superuser(clean_db) as conn:
        conn.execute("update audit_logs set actor_id = 'u_x' where id = %s", [batch[2].id])
    capsys.readouterr()
    assert main(["verify"]) == 1
    out = capsys.readouterr().out
    assert f"modified: seal 1 row {batch[2].id}" in out and "FINDINGS" in out


def test_verify_since_checks_only_newer_seals_rows(env, clean_db, capsys):
    first = stored(clean_db, 2)
    main(["seal"])
    with psycopg.connect(clean_db) as conn:
        (cut,) = conn.execute("select now()").fetchone()
    PostgresStore(clean_db).insert_events(events(3, start=10))
    main(["seal"])
    with superuser(clean_db) as conn:
        conn.execute("update audit_logs set actor_id = 'u_x' where id = %s", [first[0].id])
    capsys.readouterr()
    assert main(["verify", "--json", "--since", cut.isoformat()]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 3
    assert main(["verify", "--json"]) == 1


def test_verify_on_a_database_without_seals_exits_2(env, clean_db, capsys):
    stored(clean_db, 3)
    assert main(["verify"]) == 2
    assert "no seals" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["seal", "verify"])
def test_a_missing_key_is_a_clear_error(env, command, capsys):
    env.delenv("AUDITQ_SEAL_KEY")
    assert main([command]) == 2
    assert "AUDITQ_SEAL" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["AUDITQ_SEAL_KEY", "AUDITQ_SEAL_PUBLIC_KEY"])
def test_a_malformed_key_names_the_variable_and_not_the_value(env, name, capsys):
    env.setenv(name, "bm90LWEta2V5")  # base64 of 9 bytes
    assert main(["verify"]) == 2
    err = capsys.readouterr().err
    assert name in err and "bm90LWEta2V5" not in err
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_mismatched_key_pair_is_refused(env):
    env.setenv("AUDITQ_SEAL_PUBLIC_KEY", signing.generate().public)
    with pytest.raises(ConfigError, match="not the public half"):
        signing.checker(load_settings())


def test_keygen_prints_a_pair_that_works(capsys):
    assert main(["keygen"]) == 0
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.split())
    settings = load_settings(
        AUDITQ_SEAL_KEY=lines["AUDITQ_SEAL_KEY"],
        AUDITQ_SEAL_PUBLIC_KEY=lines["AUDITQ_SEAL_PUBLIC_KEY"],
    )
    digest = bytes(32)
    assert signing.checker(settings).valid(digest, signing.signer(settings).sign(digest))
