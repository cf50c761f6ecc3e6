"""Personal fields encrypted per subject, read back, and erased (issue 15, items 2 and 4),
against both stores: no clear value in any table, the seals still verify after erasure.
Each test runs twice: rows sealed in C where it can (native/auditq_pii.c), and all of them
in Python (where the C module is not built)."""

from __future__ import annotations

import base64
import os
import threading
import uuid

import orjson
import psycopg
import pytest

from auditq.config import ConfigError, Settings, load_settings
from auditq.events import COLUMN, ROW_COLUMNS, EventError, build_event, row_event
from auditq.pii import ENCRYPTED, ERASED, HIDDEN, unpack, writer
from auditq.pii.erase import erase_subject
from auditq.pii.reader import reveal
from auditq.pii.rotate import rewrap_all
from auditq.pii.writer import sealer
from auditq.seals import signing
from auditq.seals.sealer import seal_pass
from auditq.seals.verify import verify
from auditq.stores import EventFilters, StoreUnavailable
from tests.auditq.pii.helpers import KEY, in_first_format, rows_of
from tests.auditq.seals.helpers import superuser
from tests.dumps import dump_database
from tests.polling import wait_for
from tests.worker.helpers import TableLock, blocked_on_lock

SETTINGS = Settings(pii_key=KEY)
CLEAR = {
    "alice": ("198.51.100.23", "AliceBrowser/1.0", "alice@example.test", "+33 6 12 34 56 78"),
    "bob": ("2001:db8::b0b", "BobBrowser/2.0", "bob@example.test", "+1 555 0100"),
}


@pytest.fixture(autouse=True, params=["c", "python"])
def writer_path(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(writer, "native", None)
    return request.param


def personal_events():
    return [
        build_event(
            {
                "action": "user.login",
                "actor_id": actor,
                "ip": ip,
                "user_agent": agent,
                "metadata": {"email": email, "phone": phone, "plan": "pro", "n": i},
            }
        )
        for actor, (ip, agent, email, phone) in CLEAR.items()
        for i in range(3)
    ]


def sealed_events(settings, store, events):
    """The events as a writer stores them: their rows, sealed; read back as events."""
    return [row_event(row) for row in sealer(settings, store)(rows_of(events))]


def audit_rows(dsn: str) -> list[tuple[str]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("select t::text from audit_logs t order by txid, id").fetchall()


def names(pii_text):
    """The field names a row's pii (its JSON text, as a writer leaves it) holds."""
    return unpack(orjson.loads(pii_text)).names


def read(store, settings=SETTINGS, show="clear"):
    rows = store.query_events(EventFilters())
    reveal(rows, store, settings, show)
    return {(row["actor_id"], row["metadata"]["n"]): row for row in rows}


def test_stored_as_ciphertext_read_back_and_erased_with_seals_intact(store, clean_db):
    key_pair = signing.generate()
    events = personal_events()
    assert store.insert_rows(sealer(SETTINGS, store)(rows_of(events))) == 6

    dump = dump_database(clean_db)
    for values in CLEAR.values():
        for value in values:
            assert value not in dump
    assert "pro" in dump  # everything else stays in clear and searchable

    rows = read(store)
    for actor, (ip, agent, email, phone) in CLEAR.items():
        row = rows[(actor, 1)]
        assert (row["ip"], row["user_agent"]) == (ip, agent)
        assert row["metadata"] == {"email": email, "phone": phone, "plan": "pro", "n": 1}
        assert "pii" not in row

    seal = seal_pass(store, signing.signer(Settings(seal_key=key_pair.private)), 0)
    assert seal.rows == 6
    assert erase_subject(store, "alice") is True
    assert erase_subject(store, "alice") is False  # repeating it: harmless
    assert erase_subject(store, "nobody") is False  # an unknown subject: says so

    rows = read(store)
    assert len(rows) == 6  # the rows stay
    erased = rows[("alice", 2)]
    assert (erased["ip"], erased["user_agent"]) == (ERASED, ERASED)
    assert erased["metadata"] == {"email": ERASED, "phone": ERASED, "plan": "pro", "n": 2}
    assert erased["action"] == "user.login"
    assert rows[("bob", 2)]["metadata"]["email"] == "bob@example.test"  # others intact

    report = verify(store, signing.checker(Settings(seal_public_key=key_pair.public)))
    assert report.ok and report.rows == 6, report.findings


def test_data_keys_are_made_while_an_insert_waits(store, clean_db):
    """A writer's keys do not queue behind its inserts: the drain seals batch N+1 (here, for
    subjects without a key yet) while batch N is being stored (here, held behind a table
    lock, as a slow database holds it)."""
    waiting = personal_events()[:1]
    sealed: list = []
    with TableLock(clean_db):
        # PostgREST's session, for the supabase store: any application's.
        insert = threading.Thread(target=store.insert_events, args=(waiting,), daemon=True)
        insert.start()
        wait_for(lambda: blocked_on_lock(clean_db, application=None), "the insert to wait", 10)
        sealing = threading.Thread(
            target=lambda: sealed.extend(sealed_events(SETTINGS, store, personal_events()))
        )
        sealing.start()
        sealing.join(3)  # the insert's statement timeout is 5 s
        assert not sealing.is_alive(), "sealing waited for the insert"
        assert blocked_on_lock(clean_db, application=None)  # the insert still waits
    insert.join(10)
    assert len(sealed) == 6 and all(event.pii for event in sealed)
    assert store.insert_events(sealed) == 6
    assert len(store.query_events(EventFilters())) == 7  # the one that waited, stored too


def test_viewers_see_hidden_and_a_process_without_the_key_sees_encrypted(store):
    store.insert_events(sealed_events(SETTINGS, store, personal_events()[:1]))
    (hidden,) = read(store, show="hidden").values()
    assert (hidden["ip"], hidden["metadata"]["email"]) == (HIDDEN, HIDDEN)
    (sealed,) = read(store, settings=Settings()).values()
    assert (sealed["user_agent"], sealed["metadata"]["phone"]) == (ENCRYPTED, ENCRYPTED)


def test_a_wrong_master_key_holds_the_rows_back(store):
    store.insert_events(sealed_events(SETTINGS, store, personal_events()[:1]))
    other = Settings(pii_key=base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(StoreUnavailable, match="AUDITQ_PII_KEY"):
        sealed_events(other, store, personal_events()[:1])
    (row,) = read(store, settings=other).values()  # and a reader with it reads nothing
    assert row["ip"] == ERASED


def test_a_writer_without_the_c_path_says_so(store, writer_path, caplog):
    sealer(SETTINGS, store)
    warned = [r for r in caplog.records if "auditq_pii is not built" in r.getMessage()]
    assert len(warned) == (writer_path == "python")


def test_events_without_personal_fields_pass_unchanged(store, clean_db):
    event = build_event({"action": "cron.run", "metadata": {"k": 1}})
    assert sealer(SETTINGS, store)(rows_of([event])) == rows_of([event])
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("select count(*) from audit_pii_keys").fetchone() == (0,)


def test_a_mixed_batch_keeps_its_order_and_seals_only_what_holds_personal_fields(store, clean_db):
    settings = Settings(pii_key=KEY, pii_fields="ip,metadata.customer.email")
    plain = build_event({"action": "a", "actor_id": "erin", "metadata": {"customer": {"id": 7}}})
    personal = [
        build_event({"action": "a", "actor_id": actor, "ip": "192.0.2.1", "metadata": {"n": i}})
        for i, actor in enumerate(("frank", "grace"))
    ]
    seal = sealer(settings, store)
    (done,) = seal(rows_of(personal[1:]))
    done_before = list(done)
    batch = rows_of([plain, personal[0]]) + [done, *rows_of([plain])]
    assert seal(batch) is batch  # sealed in place
    assert batch[0] == batch[3] == rows_of([plain])[0]  # near a personal path, not on it
    assert batch[2] == done_before  # sealed already: left as it is
    first = row_event(batch[1])
    assert first.id == personal[0].id and first.ip is None
    assert names(first.pii) == ["ip"] and first.metadata == {"n": 0}
    assert seal([list(row) for row in batch]) == batch  # sealing again changes nothing
    with psycopg.connect(clean_db) as conn:  # no key for a subject with nothing to encrypt
        subjects = conn.execute("select subject from audit_pii_keys order by 1").fetchall()
    assert subjects == [("frank",), ("grace",)]


def test_a_clients_event_is_left_as_it_is_its_row_is_sealed(store):
    settings = Settings(pii_key=KEY, pii_fields="ip,metadata.email")
    data = {"action": "a", "actor_id": "heidi", "ip": "192.0.2.7", "metadata": {"email": "h@x"}}
    event = build_event(data)
    (row,) = sealer(settings, store)(rows_of([event]))
    assert event.ip == "192.0.2.7" and event.metadata == {"email": "h@x"} and event.pii is None
    assert len(row) == len(ROW_COLUMNS)  # the values keep the columns' order
    assert row[COLUMN["ip"]] is None and row[COLUMN["metadata"]] == {}
    assert names(row[COLUMN["pii"]]) == ["ip", "metadata.email"]


def test_adding_data_keys_reports_only_the_subjects_it_inserted(store, clean_db):
    first = [{"subject": s, "key_id": str(uuid.uuid4()), "wrapped": "w1"} for s in ("ivy", "jo")]
    assert store.add_pii_keys(first) == {"ivy", "jo"}
    again = [{"subject": s, "key_id": str(uuid.uuid4()), "wrapped": "w2"} for s in ("jo", "kim")]
    assert store.add_pii_keys(again) == {"kim"}
    kept = {row["subject"]: row["key_id"] for row in store.pii_keys(subjects=["jo", "kim"])}
    # The first writer's key stays; the postgres store's COPY failed whole on "jo", and
    # its insert that skips taken subjects added "kim" once.
    assert kept == {"jo": first[1]["key_id"], "kim": again[1]["key_id"]}
    assert len(store.pii_keys(subjects=["ivy", "jo", "kim"])) == 3


def test_data_keys_of_any_subject_text_are_stored_and_found_exactly(store, clean_db):
    # Subjects are producers' actor ids: quotes, backslashes, commas, braces, non-ASCII, "".
    subjects = ['a"b', "c\\d", "e,f", "{g}", "h\u00e9\u4e2d", "", "NULL", " i "]
    rows = [
        {"subject": s, "key_id": str(uuid.uuid4()), "wrapped": f"w{i}"}
        for i, s in enumerate(subjects)
    ]
    assert store.add_pii_keys(rows) == set(subjects)
    by_subject = {row["subject"]: row for row in store.pii_keys(subjects=subjects)}
    assert by_subject == {row["subject"]: row for row in rows}
    by_id = store.pii_keys(key_ids=[rows[0]["key_id"], rows[5]["key_id"]])
    assert sorted(row["subject"] for row in by_id) == ["", 'a"b']
    assert store.pii_keys(subjects=["nobody"]) == [] and store.pii_keys() == []


def test_a_writer_that_loses_the_race_for_a_new_key_uses_the_winners(store, clean_db):
    settings = Settings(pii_key=KEY, pii_fields="ip")
    event = build_event({"action": "a", "actor_id": "lee", "ip": "192.0.2.9"})
    (winner,) = sealed_events(settings, store, [event])

    class Late:  # the loser looked for a key just before the winner inserted it
        def __init__(self) -> None:
            self.looked = False

        def __getattr__(self, name):
            return getattr(store, name)

        def pii_keys(self, **kwargs):
            if not self.looked:
                self.looked = True
                return []
            return store.pii_keys(**kwargs)

    (loser,) = sealed_events(settings, Late(), [event])
    assert unpack(orjson.loads(loser.pii)).key_id == unpack(orjson.loads(winner.pii)).key_id
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("select count(*) from audit_pii_keys").fetchone() == (1,)


def test_nested_metadata_fields_and_a_ciphertext_moved_to_another_row(store):
    settings = Settings(pii_key=KEY, pii_fields="metadata.customer.email")
    events = [
        build_event(
            {"action": "a", "actor_id": "carol", "metadata": {"customer": {"email": e, "id": 7}}}
        )
        for e in ("c1@example.test", "c2@example.test")
    ]
    first, second = sealed_events(settings, store, events)
    assert first.metadata == {"customer": {"id": 7}}
    assert names(first.pii) == ["metadata.customer.email"]
    swapped = [first.model_copy(update={"pii": second.pii}), second]
    store.insert_events(swapped)
    rows = {row["id"]: row for row in store.query_events(EventFilters())}
    reveal(list(rows.values()), store, settings, "clear")
    assert rows[str(second.id)]["metadata"]["customer"] == {"id": 7, "email": "c2@example.test"}
    assert rows[str(first.id)]["metadata"]["customer"]["email"] == ERASED


def test_field_names_that_json_escapes_are_stored_and_read_back(store, clean_db):
    # Field names go into pii's one string, escaped once per set of names.
    settings = Settings(pii_key=KEY, pii_fields='ip,metadata.say "hi",metadata.back\\slash é')
    metadata = {'say "hi"': "quoted", "back\\slash é": "escaped", "n": 0}
    event = build_event({"action": "a", "actor_id": "ivy", "ip": "192.0.2.3", "metadata": metadata})
    (done,) = sealed_events(settings, store, [event])
    assert names(done.pii) == ["ip", 'metadata.say "hi"', "metadata.back\\slash é"]
    store.insert_events([done])
    (row,) = read(store, settings).values()
    assert (row["ip"], row["metadata"]) == ("192.0.2.3", metadata)


def test_producers_cannot_set_the_ciphertext():
    with pytest.raises(EventError) as error:
        build_event({"action": "a", "pii": {"k": "x"}})
    assert error.value.field == "pii"
    assert "pii" not in build_event({"action": "a"}).to_json()


@pytest.mark.parametrize("value", ["abc", base64.b64encode(b"short").decode()])
def test_a_malformed_key_names_the_variable_not_the_value(value):
    with pytest.raises(ConfigError, match="AUDITQ_PII_KEY") as error:
        load_settings(pii_key=value)
    assert value not in str(error.value)


def test_unknown_fields_are_refused():
    with pytest.raises(ConfigError, match="AUDITQ_PII_FIELDS"):
        load_settings(pii_fields="ip,email")


def test_rotation_rewraps_every_data_key_and_nothing_else_changes(store, clean_db):
    store.insert_events(sealed_events(SETTINGS, store, personal_events()))
    before = audit_rows(clean_db)
    new = base64.b64encode(os.urandom(32)).decode()
    rotating = Settings(pii_key=new, pii_old_key=KEY)
    assert read(store, rotating)[("bob", 0)]["metadata"]["email"] == "bob@example.test"
    # A writer meanwhile uses the old wrapping of an existing subject, new keys get the new one.
    sealed_events(
        rotating, store, [build_event({"action": "a", "actor_id": "dave", "ip": "192.0.2.1"})]
    )

    counts = rewrap_all(store, rotating)
    assert (counts.rewrapped, counts.current, counts.unreadable) == (2, 1, 0)
    assert rewrap_all(store, rotating).current == 3  # repeating it: nothing to do
    rows = read(store, Settings(pii_key=new))  # the old key is no longer needed
    assert rows[("alice", 0)]["user_agent"] == "AliceBrowser/1.0"
    assert audit_rows(clean_db)[: len(before)] == before  # the audit rows did not change


def test_seals_cover_the_ciphertext(store, clean_db):
    key_pair = signing.generate()
    events = sealed_events(SETTINGS, store, personal_events()[:2])
    store.insert_events(events)
    seal_pass(store, signing.signer(Settings(seal_key=key_pair.private)), 0)
    with superuser(clean_db) as conn:
        conn.execute(
            "update audit_logs set pii = jsonb_build_object('v2', (pii->>'v2') || ',ip')"
            " where id = %s",
            [events[1].id],
        )
    report = verify(store, signing.checker(Settings(seal_public_key=key_pair.public)))
    assert not report.ok
    (finding,) = report.findings
    assert str(finding).startswith(f"modified: seal 1 row {events[1].id}")


def test_both_stores_store_the_ciphertext_as_the_same_json_object(store, clean_db):
    # The writer hands the stores the pii column's JSON text; PostgREST must get the object
    # it stands for (a JSON string would be stored as a jsonb string: another shape).
    event = build_event({"action": "a", "actor_id": "zoe", "ip": "192.0.2.9"})
    (done,) = sealed_events(SETTINGS, store, [event])
    assert store.insert_events([done]) == 1
    with psycopg.connect(clean_db) as conn:
        (pii,) = conn.execute("select pii from audit_logs where id = %s", [event.id]).fetchone()
    assert pii == orjson.loads(done.pii)
    assert list(pii) == ["v2"] and unpack(pii).names == ["ip"]


def test_rows_stored_in_the_first_format_still_read_erase_and_verify(store, clean_db):
    # Rows stored before format 2 keep the object they were stored with, and their seals.
    key_pair = signing.generate()
    events = sealed_events(SETTINGS, store, personal_events())
    first_format = [  # alice's rows
        event.model_copy(update={"pii": in_first_format(event.pii)}) for event in events[:3]
    ]
    store.insert_events(first_format + events[3:])
    with psycopg.connect(clean_db) as conn:
        stored = conn.execute("select actor_id, pii from audit_logs").fetchall()
    assert {(actor, tuple(sorted(pii))) for actor, pii in stored} == {
        ("alice", ("c", "f", "k", "v")),
        ("bob", ("v2",)),
    }
    rows = read(store)
    for actor, (ip, agent, email, phone) in CLEAR.items():
        row = rows[(actor, 0)]
        assert (row["ip"], row["user_agent"]) == (ip, agent)
        assert (row["metadata"]["email"], row["metadata"]["phone"]) == (email, phone)
    assert read(store, show="hidden")[("alice", 1)]["user_agent"] == HIDDEN

    seal_pass(store, signing.signer(Settings(seal_key=key_pair.private)), 0)
    assert erase_subject(store, "alice") is True
    rows = read(store)
    assert rows[("alice", 2)]["metadata"]["phone"] == ERASED
    assert rows[("bob", 2)]["metadata"]["phone"] == CLEAR["bob"][3]
    report = verify(store, signing.checker(Settings(seal_public_key=key_pair.public)))
    assert report.ok and report.rows == 6, report.findings


def test_a_personal_number_past_64_bits_is_encrypted_not_refused(store):
    # Valid metadata (Postgres' jsonb holds it) that orjson alone cannot encode.
    settings = Settings(pii_key=KEY, pii_fields="metadata.phone")
    event = build_event({"action": "a", "actor_id": "yan", "metadata": {"phone": 2**70}})
    (done,) = sealed_events(settings, store, [event])
    assert done.metadata == {} and str(2**70) not in done.pii
    store.insert_events([done])
    (row,) = store.query_events(EventFilters())
    reveal([row], store, settings, "clear")
    assert row["metadata"] == {"phone": 2**70}
