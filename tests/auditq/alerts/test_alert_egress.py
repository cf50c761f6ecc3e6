"""Notifications never reach this host or its private network unless allowed (issue 10,
item 6): checked when a channel is saved and again at every send."""

from __future__ import annotations

import time

import pytest

from auditq.alerts import egress
from auditq.alerts.channels import parse_channel
from auditq.alerts.evaluator import Evaluator
from auditq.alerts.models import InvalidInput
from tests.auditq.alerts.helpers import alert_service, email_channel, set_queue


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("fd00::1", False),
        ("fe80::1%eth0", False),
        ("::ffff:127.0.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 (an address checked, not bound)
        ("224.0.0.1", False),
    ],
)
def test_which_addresses_are_public(address, public):
    assert egress.is_public(address) is public


def test_a_request_is_pinned_to_the_address_that_was_checked():
    pinned = egress.pin("https://user:pw@8.8.8.8:8443/hook?x=1", allow_private=False)
    assert pinned.url == "https://user:pw@8.8.8.8:8443/hook?x=1"
    assert pinned.headers == {"Host": "8.8.8.8:8443"}
    assert pinned.extensions == {"sni_hostname": "8.8.8.8"}
    v6 = egress.pin("http://[2606:4700:4700::1111]/hook", allow_private=False)
    assert v6.url == "http://[2606:4700:4700::1111]/hook" and v6.extensions == {}


def test_private_destinations_need_the_flag():
    with pytest.raises(egress.Refused, match="AUDITQ_ALERT_ALLOW_PRIVATE"):
        egress.pin("http://localhost:8080/hook", allow_private=False)
    assert egress.pin("http://localhost:8080/hook", allow_private=True).url == (
        "http://localhost:8080/hook"
    )
    with pytest.raises(egress.Refused, match="cannot resolve"):
        egress.pin("http://no-such-host.invalid/hook", allow_private=False)


def test_saving_refuses_private_hosts_but_not_names_dns_cannot_answer_now():
    def webhook(url):
        return {"name": "x", "kind": "webhook", "config": {"url": url}}

    with pytest.raises(InvalidInput) as refused:
        parse_channel(webhook("http://127.0.0.1:9/metrics"))
    assert refused.value.field == "config.url"
    with pytest.raises(InvalidInput) as smtp:
        parse_channel(
            {
                "name": "mail",
                "kind": "email",
                "config": {"host": "127.0.0.1", "from": "a@b.example", "to": "c@d.example"},
            }
        )
    assert smtp.value.field == "config.host"
    # Checked again when sending; DNS may just be down while the channel is saved.
    assert parse_channel(webhook("https://hooks.example.invalid/x")).config["url"]
    assert parse_channel(webhook("http://127.0.0.1:9/metrics"), allow_private=True)


def test_a_send_to_a_private_address_is_refused_at_send_time(
    pg_repo, settings, redis_client, receiver, smtp
):
    # Saved while private destinations were allowed (or a name that resolved elsewhere then).
    svc = alert_service(pg_repo)
    hook = svc.create_channel(
        {"name": "hook", "kind": "webhook", "config": {"url": receiver.url + "/hook"}}
    )
    mail = email_channel(svc, smtp)
    svc.create_rule(
        {
            "name": "Queue",
            "metric": "queue_length",
            "op": ">",
            "threshold": 1,
            "channel_ids": [hook["id"], mail["id"]],
        }
    )
    strict = settings.model_copy(update={"alert_allow_private": False})
    evaluator = Evaluator(strict, redis_client, pg_repo)
    try:
        set_queue(redis_client, 5)
        evaluator.evaluate_once(time.time())
    finally:
        evaluator.close()
    assert receiver.requests == [] and smtp.messages == []
    outbox = pg_repo.list("alert_outbox")
    assert [row["status"] for row in outbox] == ["failed", "failed"]
    assert all(row["last_error"].startswith("refused: 127.0.0.1") for row in outbox)
