"""Delivery of the customer's notifications: threenines is the receiver behind Alertmanager that sends them.

Alertmanager routes a customer's alerts to one webhook, `POST /alertmanager/deliver` on the exporter
(`endpoint`). The exporter records the dispatch in the audit ledger, writes one notice per designated contact to
the delivery ledger (`ledger`, `<state_dir>/delivery.sqlite`), acknowledges, and the `worker` renders each
message (`message`, in the contact's language and the contract's time zone) and sends it on the contact's
channel (`channels`: SMTP, customer webhook, SMS/voice gateway, PagerDuty Events API v2), retrying with backoff
until the channel accepts it. The acceptance (the relay's 250 reply, the gateway's 2xx, PagerDuty's 202) is the
notification the contract counts; docs/alerting.md says why.
"""
