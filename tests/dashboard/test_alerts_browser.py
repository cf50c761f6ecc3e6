"""An operator, in headless Chromium, adds a channel and a rule through the forms; the web
process's own background evaluator fires the rule, the channel gets the message, and the
overview shows the alert firing."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.auditq.alerts.helpers import Receiver
from tests.dashboard.helpers import LiveServer, log_in, screenshot
from tests.polling import wait_for

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def alerting_server(make_app):
    """The app with its background evaluator on (as in production), served for real."""
    app = make_app(alerts_in_web=True, alert_interval=0.2, alert_lease=2, alert_allow_private=True)
    scheduler = app.extensions["auditq_alerts_scheduler"]
    assert scheduler is not None and scheduler.running
    server = LiveServer(app).start()
    yield server, app
    server.stop()
    scheduler.shutdown()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def test_a_rule_made_in_the_browser_fires_and_shows_on_the_overview(
    page, alerting_server, receiver, redis_client
):
    server, app = alerting_server
    base = server.url
    log_in(page, base)

    page.click("nav >> text=Alerts")
    expect(page.locator("h1")).to_have_text("Alerts")
    page.click("text=Channels")
    page.click("#new-channel-slack")
    page.fill("#f-name", "ops-slack")
    page.fill("#f-url", receiver.url + "/slack/T000/B000/abcdefgh")
    page.click("#save-channel")
    expect(page.locator(".flash-ok")).to_contain_text("Channel “ops-slack” added")
    expect(page.locator("#channels")).to_contain_text("…efgh")
    expect(page.locator("#channels")).not_to_contain_text("abcdefgh")
    screenshot(page, "alerts-channels")

    page.click("text=Rules")
    page.click("#new-rule")
    page.fill("#f-name", "Queue over 3")
    page.select_option("#f-metric", "queue_length")
    page.select_option("#f-op", ">")
    page.fill("#f-threshold", "three")  # a mistake first: the form says what is wrong
    page.select_option("#f-channel_ids", label="ops-slack (Slack)")
    page.click("#save-rule")
    expect(page.locator("#form-errors")).to_be_visible()
    expect(page.locator(".field.invalid")).to_contain_text("Threshold")
    screenshot(page, "alerts-rule-form-errors")
    page.fill("#f-threshold", "3")
    page.select_option("#f-severity", "critical")
    page.click("#save-rule")
    expect(page.locator(".flash-ok")).to_contain_text("Rule “Queue over 3” created.")
    row = page.locator('tr[data-rule-name="Queue over 3"]')
    expect(row).to_contain_text("queue_length > 3")
    expect(row.locator(".state-normal")).to_be_visible()

    keys = app.extensions["auditq"].keys
    for i in range(10):
        redis_client.xadd(keys.stream, {"event": f'{{"action": "browser.alert", "n": {i}}}'})

    page.click("nav >> text=Overview")
    firing = page.locator("#firing-alerts")
    expect(firing).to_contain_text("Queue over 3", timeout=30_000)
    expect(firing).to_contain_text("critical")
    screenshot(page, "overview-firing-alert")

    (message,) = wait_for(lambda: receiver.ok("/slack/T000/B000/abcdefgh"), "the Slack message")
    assert "[FIRING] Queue over 3" in message["text"]

    page.click("nav >> text=Alerts")
    expect(page.locator('tr[data-rule-name="Queue over 3"] .state-firing')).to_be_visible()
    expect(page.locator('tr[data-rule-name="Queue over 3"] .current-value')).to_have_text("10")
    screenshot(page, "alerts-rules-firing")
    page.click("text=History")
    expect(page.locator("#history")).to_contain_text("ops-slack")
    screenshot(page, "alerts-history")
    # The one failed submit answered 400, which Chromium reports; nothing else went wrong.
    assert [e for e in page.console_errors if "status of 400" not in e] == []
