"""The dashboard in headless Chromium (Debian's), served for real on a free port.

Screenshots go to test-artifacts/ (gitignored).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from auditq.client import AuditClient
from auditq.events import build_event
from auditq.stores.postgres import PostgresStore
from tests.dashboard.helpers import add_dead_letter, log_in, screenshot

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_the_overview_updates_live_without_a_reload(page, live_server, app, redis_client):
    log_in(page, live_server.url)
    expect(page.locator("#queue-length")).to_have_text("0")
    page.evaluate("window.__sameDocument = true")

    producer = AuditClient(app.extensions["auditq"].settings, redis_client=redis_client)
    producer.log_many([{"action": "browser.test", "actor_id": f"u{i}"} for i in range(5)])
    expect(page.locator("#queue-length")).to_have_text("5")
    producer.log_many([{"action": "browser.test"} for _ in range(7)])
    expect(page.locator("#queue-length")).to_have_text("12")
    assert page.evaluate("window.__sameDocument") is True  # htmx swapped, no reload
    screenshot(page, "overview-light")
    assert page.console_errors == []


def test_polling_pauses_while_the_tab_is_hidden(page, live_server, app, redis_client):
    log_in(page, live_server.url)
    polls = []
    page.on("request", lambda r: polls.append(r.url) if "range=" in r.url else None)
    page.evaluate(
        "Object.defineProperty(document, 'visibilityState',"
        " {configurable: true, get: () => 'hidden'});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    polls.clear()
    page.wait_for_timeout(2000)  # four refresh intervals (0.5 s) with the tab hidden
    assert polls == []
    AuditClient(app.extensions["auditq"].settings, redis_client=redis_client).log("x")
    page.evaluate(
        "Object.defineProperty(document, 'visibilityState',"
        " {configurable: true, get: () => 'visible'});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    expect(page.locator("#queue-length")).to_have_text("1")
    assert polls


def test_requeue_a_dead_letter(page, live_server, redis_client, keys):
    dead = add_dead_letter(
        redis_client, keys, {"action": "order.refund", "metadata": {"order": 7}}, "postgres 57014"
    )
    log_in(page, live_server.url)
    page.click("text=Dead letters")
    row = page.locator(f"#dl-{dead}")
    expect(row).to_contain_text("order.refund")
    expect(row).to_contain_text("postgres 57014")
    screenshot(page, "dead-letters-light")
    row.get_by_role("button", name="Requeue").click()
    expect(page.locator(".flash-ok")).to_contain_text(f"Requeued dead letter {dead}")
    expect(page.locator(".empty")).to_have_text("No dead letters.")
    assert redis_client.xlen(keys.dead) == 0
    assert redis_client.xlen(keys.stream) == 1


def test_hostile_audit_data_is_shown_as_text_and_never_run(page, live_server, clean_db):
    action = "<script>window.__pwned='script'</script>"
    actor = '"><img src=x onerror="window.__pwned=\'actor\'">'
    note = "<img src=x onerror=\"window.__pwned='metadata';alert(1)\">"
    writer = PostgresStore(clean_db, timeout=5)
    writer.insert_events(
        [
            build_event(
                {
                    "action": action,
                    "actor_id": actor,
                    "target_id": "<svg onload=alert(2)>",
                    "user_agent": "<iframe src=javascript:alert(3)>",
                    "metadata": {"note": note, "<b>key</b>": "</pre><script>alert(4)</script>"},
                    "occurred_at": datetime.now(UTC),
                }
            )
        ]
    )
    writer.close()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    log_in(page, live_server.url)
    page.click("text=Explorer")
    row = page.locator("#events tbody tr").first
    expect(row.locator("code.action")).to_have_text(action)
    expect(row).to_contain_text(actor)
    row.locator("summary").click()
    expect(row.locator("pre.metadata")).to_contain_text(json.dumps(note))  # as JSON text
    expect(row.locator("pre.metadata")).to_contain_text("</pre><script>alert(4)</script>")
    screenshot(page, "explorer-light")

    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("#events img, #events svg, #events iframe, #events script").count() == 0
    assert dialogs == []
    assert page.console_errors == []  # nothing even tried to run against the CSP


def test_pages_fit_a_phone(browser, live_server):
    context = browser.new_context(
        color_scheme="dark", viewport={"width": 390, "height": 844}, is_mobile=True
    )
    tab = context.new_page()
    try:
        log_in(tab, live_server.url)
        width = tab.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
        screenshot(tab, "overview-phone-dark")
    finally:
        context.close()


def test_the_overview_figures_read_right_in_a_browser(page, live_server, redis_client, keys):
    # Issue 10: fractional per-minute cards, a "failed" series mixing batches and events,
    # and the current minute's dip. An hour of steady traffic, seen as a person sees it.
    now = datetime.now(UTC).timestamp()
    current = int(now // 60)
    pipe = redis_client.pipeline()
    for minute in range(current - 59, current + 1):
        filling = minute == current
        traffic = 700 if filling else 10_037 + (minute % 5) * 3
        pipe.hset(
            keys.minute(minute),
            mapping={
                "enqueued": traffic,
                "inserted": traffic - 3,
                "batches": 20,
                "lat_le_100": 19,
                "lat_le_250": 1,
                "dropped_queue_full": 40 if minute % 17 == 0 else 0,
                "dead_lettered": 3 if minute % 11 == 0 else 0,
                "direct_failed": 2 if minute % 13 == 0 else 0,
                "failed_batches": 4 if minute % 19 == 0 else 0,
            },
        )
    pipe.execute()
    log_in(page, live_server.url)
    enqueued = page.locator("#rate-enqueued").inner_text()
    assert "." not in enqueued and int(enqueued.replace(",", "")) > 700
    legends = page.locator(".chart .legend").all_inner_texts()
    assert any("dead-lettered" in text and "direct writes failed" in text for text in legends)
    assert any("failed batches" in text for text in legends)
    assert all("this minute so far" in text for text in legends)
    assert page.locator(".chart .line.partial").count() >= 2  # enqueued and inserted
    screenshot(page, "overview-figures-light")
    assert page.console_errors == []
