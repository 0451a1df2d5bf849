"""The channels a designated contact is reached on, one small class each with one signature:
`await channel.send(notice, contact) -> receipt`, or DeliveryError(reason, detail).

| contact | channel | accepted when | receipt |
|---|---|---|---|
| email | SMTP to notification.smtp.smarthost | 250 after DATA | the reply, with the relay's queue id |
| webhook | POST JSON (threenines.notification/v1) | any 2xx | status and the start of the body |
| sms, phone | POST JSON to notification.sms_gateway.url | any 2xx | status and the start of the body |
| pagerduty | PagerDuty Events API v2 | 202 | PagerDuty's dedup_key |

`reason` is one of REASONS (a metric label); `detail` is what the far end said, with any secret we sent removed.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import json
from collections.abc import Callable
from email.message import EmailMessage
from typing import Protocol

from threenines.config.configfile import HOSTPORT_RE
from threenines.config.inventory import Contact, Notification
from threenines.config.secrets import SecretError, SecretRef
from threenines.notify import http, smtp
from threenines.notify.message import Notice, render

# Why a delivery attempt failed: a small fixed set (metric label values).
REASONS = ("timeout", "connect", "tls", "tls_required", "auth", "rejected", "unavailable", "protocol", "config",
           "error")
EMAIL_TIMEOUT = 60.0
HTTP_TIMEOUT = 15.0
RECEIPT_BODY = 200


class DeliveryError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason if reason in REASONS else "error"
        self.detail = detail[:300]


class Channel(Protocol):
    kind: str
    timeout: float

    async def send(self, notice: Notice, contact: Contact) -> str: ...


def _secret(ref: SecretRef | None) -> str | None:
    if ref is None:
        return None
    try:
        return ref.resolve()
    except SecretError as err:
        raise DeliveryError("config", str(err)) from None


def _scrub(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<secret>")
    return text


def _excerpt(body: bytes) -> str:
    return " ".join(body[:RECEIPT_BODY].decode("utf-8", "replace").split())


def email_message(notice: Notice, sender: str, recipient: str) -> EmailMessage:
    rendered = render(notice)
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = rendered.subject
    message["Date"] = email.utils.formatdate(localtime=False)
    digest = hashlib.sha256(f"{notice.outage_key}/{notice.status}/{recipient}".encode()).hexdigest()[:24]
    # The same outage event to the same address has the same Message-ID: an HA peer's duplicate is recognisable.
    message["Message-ID"] = f"<{digest}.{notice.status}@threenines>"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message


class EmailChannel:
    kind = "email"
    timeout = EMAIL_TIMEOUT

    def __init__(self, notification: Notification) -> None:
        self._smtp = notification.smtp

    async def send(self, notice: Notice, contact: Contact) -> str:
        if self._smtp is None:
            raise DeliveryError("config", "the inventory has no notification.smtp for e-mail contacts")
        found = HOSTPORT_RE.fullmatch(self._smtp.smarthost)
        assert found is not None  # the inventory checked it
        password = _secret(self._smtp.password)
        settings = smtp.SmtpSettings(
            host=found.group("host").strip("[]"), port=int(found.group("port") or 25), sender=self._smtp.sender,
            require_tls=self._smtp.require_tls, ca_file=self._smtp.ca_file, username=self._smtp.username,
            password=password)
        message = email_message(notice, self._smtp.sender, contact.target)
        try:
            receipt = await smtp.send(settings, contact.target, message.as_bytes())
        except smtp.SmtpError as err:
            raise DeliveryError(err.reason, _scrub(err.detail, password)) from None
        queue = f" queue_id={receipt.queue_id}" if receipt.queue_id else ""
        return f"{receipt.reply}{queue}{' tls' if receipt.tls else ''}"


async def _post(url: str, document: dict, token: str | None, accept: Callable[[int], bool]) -> http.HttpReply:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(document, ensure_ascii=False, sort_keys=True).encode()
    try:
        reply = await http.post(url, body, headers)
    except http.HttpError as err:
        raise DeliveryError(err.reason, _scrub(err.detail, token)) from None
    if not accept(reply.status):
        reason = "unavailable" if reply.status >= 500 or reply.status == 429 else "rejected"
        raise DeliveryError(reason, _scrub(f"HTTP {reply.status}: {_excerpt(reply.body)}", token))
    return reply


def _ok(status: int) -> bool:
    return 200 <= status < 300


class WebhookChannel:
    """The customer's own endpoint receives the notification document (schema threenines.notification/v1)."""

    kind = "webhook"
    timeout = HTTP_TIMEOUT

    async def send(self, notice: Notice, contact: Contact) -> str:
        token = _secret(contact.secret)
        reply = await _post(contact.target, render(notice).document, token, _ok)
        return _scrub(f"HTTP {reply.status} {_excerpt(reply.body)}".strip(), token)


class GatewayChannel:
    """SMS and voice calls through the provider's gateway: {to, kind, text, reference, status} as JSON."""

    timeout = HTTP_TIMEOUT

    def __init__(self, kind: str, notification: Notification) -> None:
        self.kind = kind
        self._gateway = notification.sms_gateway

    async def send(self, notice: Notice, contact: Contact) -> str:
        if self._gateway is None:
            raise DeliveryError("config", f"the inventory has no notification.sms_gateway for {self.kind} contacts")
        token = _secret(self._gateway.token)
        rendered = render(notice)
        document = {"to": contact.target, "kind": contact.kind, "text": rendered.sms, "reference": notice.reference,
                    "status": notice.status, "language": notice.language}
        reply = await _post(self._gateway.url, document, token, _ok)
        return _scrub(f"HTTP {reply.status} {_excerpt(reply.body)}".strip(), token)


def pagerduty_event(notice: Notice, routing_key: str) -> dict:
    rendered = render(notice)
    event: dict[str, object] = {
        "routing_key": routing_key,
        "event_action": "trigger" if notice.status == "firing" else "resolve",
        # The outage's identity: the resolve closes the trigger's incident, and an HA peer's duplicate merges.
        "dedup_key": f"threenines/{notice.outage_key}",
    }
    if notice.status == "firing":
        event["payload"] = {"summary": rendered.subject[:1024], "source": notice.customer_name,
                            "severity": "critical", "component": notice.target, "group": notice.service,
                            "class": "outage", "custom_details": rendered.document}
    return event


class PagerDutyChannel:
    kind = "pagerduty"
    timeout = HTTP_TIMEOUT

    async def send(self, notice: Notice, contact: Contact) -> str:
        key = _secret(contact.secret)
        assert key is not None  # the inventory requires a routing key
        reply = await _post(contact.target, pagerduty_event(notice, key), None, lambda s: s == 202)
        try:
            answer = json.loads(reply.body)
        except ValueError:
            answer = {}
        dedup = answer.get("dedup_key") if isinstance(answer, dict) else None
        return _scrub(f"HTTP 202 dedup_key={dedup}" if dedup else f"HTTP 202 {_excerpt(reply.body)}", key)


def channels_for(notification: Notification) -> dict[str, Channel]:
    return {"email": EmailChannel(notification), "webhook": WebhookChannel(),
            "sms": GatewayChannel("sms", notification), "phone": GatewayChannel("phone", notification),
            "pagerduty": PagerDutyChannel()}
