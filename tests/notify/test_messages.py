"""What a customer reads, pinned by golden files for each language, event and channel.

Regenerate after a deliberate change of wording with:
    THREENINES_UPDATE_GOLDEN=1 .venv/bin/pytest tests/notify/test_messages.py
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
from pathlib import Path

import pytest

from threenines.notify.channels import email_message, pagerduty_event
from threenines.notify.message import LANGUAGES, Notice, render

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("THREENINES_UPDATE_GOLDEN") == "1"
# 2026-11-23 06:00:00 UTC = 07:00 in Amsterdam (CET): the first failed probe; determined 5 min later; the first
# successful probe 1 h 5 min 10 s after the first failed one.
FIRST_FAILED = 1_795_413_600.0
DETERMINED = FIRST_FAILED + 300.25
ENDED = FIRST_FAILED + 3910.0
EARLIER = 240.0  # an earlier outage of the same service this month: 4 min


def notice(status: str, language: str, service: str = "connectivity", month: bool = True) -> Notice:
    """With `month`, the month so far as the delivery endpoint takes it: as of the determination (firing) or the
    end (resolved), the earlier outage plus this one up to then."""
    as_of = DETERMINED if status == "firing" else ENDED
    return Notice(status=status, customer="acme", customer_name="ACME Hosting B.V.", service=service,
                  target="uplink-a" if service == "connectivity" else "power",
                  address="192.0.2.10" if service == "connectivity" else "A, B",
                  timezone="Europe/Amsterdam" if language == "en" else "Asia/Shanghai", language=language,
                  determined_at=DETERMINED, first_failed_at=FIRST_FAILED,
                  ended_at=ENDED if status == "resolved" else None, contacts_version="2026-10-01",
                  month_as_of=as_of if month else None,
                  month_outage_seconds=EARLIER + as_of - FIRST_FAILED if month else None)


CASES = [(language, status, "connectivity") for language in LANGUAGES for status in ("firing", "resolved")]
CASES += [("en", "firing", "power"), ("zh-CN", "resolved", "power")]
NO_MONTH = {("en", "firing", "power")}  # pinned without a figure: the line is omitted, not guessed


def case(language: str, status: str, service: str) -> Notice:
    return notice(status, language, service, month=(language, status, service) not in NO_MONTH)


def outputs(n: Notice) -> dict[str, str]:
    rendered = render(n)
    return {
        "subject.txt": rendered.subject + "\n",
        "email.txt": rendered.text,
        "email.html": rendered.html,
        "sms.txt": rendered.sms + "\n",
        "webhook.json": json.dumps(rendered.document, indent=2, ensure_ascii=False, sort_keys=True) + "\n",
        "pagerduty.json": json.dumps(pagerduty_event(n, "ROUTING-KEY"), indent=2, ensure_ascii=False,
                                     sort_keys=True) + "\n",
    }


@pytest.mark.parametrize(("language", "status", "service"), CASES, ids=lambda v: str(v))
def test_each_channels_message_matches_its_golden_file(language: str, status: str, service: str) -> None:
    folder = GOLDEN / language / f"{service}-{status}"
    for name, text in outputs(case(language, status, service)).items():
        path = folder / name
        if UPDATE:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        assert path.exists(), f"no golden file {path}: THREENINES_UPDATE_GOLDEN=1 .venv/bin/pytest {__file__}"
        assert text == path.read_text(encoding="utf-8"), f"{path} differs (regenerate if intended)"


@pytest.mark.parametrize(("language", "status", "service"), CASES, ids=lambda v: str(v))
def test_no_internal_link_label_or_utc_reaches_the_customer(language: str, status: str, service: str) -> None:
    for name, text in outputs(case(language, status, service)).items():
        if name == "pagerduty.json":
            continue  # the event's routing fields are PagerDuty's, not the customer's reading
        assert not re.search(r"https?://|runbook|audience|severity|alertname|fingerprint|instance|Alertmanager|"
                             r"Prometheus|\bUTC\b(?!\+)", text), (name, text)
        assert "ACME Hosting B.V." in text


def test_times_are_in_the_contract_zone_and_the_resolved_message_is_past_tense() -> None:
    firing, resolved = render(notice("firing", "en")), render(notice("resolved", "en"))
    assert "First failed probe: 2026-11-23 07:00:00 CET" in firing.text
    assert "Outage determined:  2026-11-23 07:05:00 CET" in firing.text
    assert "is unavailable" in firing.text and "ongoing" in firing.text
    assert "was unavailable and has been restored" in resolved.text and "is unavailable" not in resolved.text
    assert "Duration:" in resolved.text and "1 h 5 min 10 s" in resolved.text
    chinese = render(notice("resolved", "zh-CN"))
    assert "2026-11-23 14:00:00" in chinese.text  # Asia/Shanghai, UTC+08:00
    assert "已恢复" in chinese.subject and "1小时5分10秒" in chinese.text
    assert resolved.document["first_failed_probe"] == "2026-11-23T07:00:00+01:00"
    assert resolved.document["duration_seconds"] == 3910


def test_the_email_is_multipart_text_and_html_with_an_encoded_subject() -> None:
    n = notice("firing", "zh-CN")
    raw = email_message(n, "noc@provider.test", "noc@acme.test").as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == render(n).subject
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed.get_content_type() == "multipart/alternative"
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().replace("\r\n", "\n") == render(n).text  # SMTP's line ends
    assert html.get_content().replace("\r\n", "\n") == render(n).html
    # the same outage event to the same address keeps its Message-ID (an HA peer's duplicate is recognisable)
    again = email.message_from_bytes(email_message(n, "noc@provider.test", "noc@acme.test").as_bytes(),
                                     policy=email.policy.default)
    assert again["Message-ID"] == parsed["Message-ID"]
