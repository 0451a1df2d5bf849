"""Agreed maintenance windows (exclusions.yml, reason: maintenance) → Alertmanager silences, idempotently.

A silence matches only the customer's own pages (audience="customer", customer, service): during agreed
maintenance the contract owes no notification, but the provider's NOC still sees everything. Run it from a
timer (e.g. hourly); each run creates the silences missing for windows starting within the horizon, expires
the ones threenines created whose window was removed or changed, and leaves everything else alone.
Windows are silences rather than `time_intervals` because they are one-off and customer-specific; the
config file would change (and need a reload of every cluster member) with each change request.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from threenines.config.exclusions import Exclusions
from threenines.config.inventory import Inventory

CREATED_BY = "threenines"
TAG = "threenines-maintenance"


class AlertmanagerError(Exception):
    """Alertmanager refused or could not be reached; the message names the request, never a credential."""


@dataclass(frozen=True)
class Silence:
    key: str  # identifies the window occurrence and its exact matchers and times
    matchers: tuple[tuple[str, str], ...]
    starts_at: float
    ends_at: float
    comment: str

    def body(self) -> dict:
        return {
            "matchers": [{"name": n, "value": v, "isRegex": False, "isEqual": True} for n, v in self.matchers],
            "startsAt": _iso(self.starts_at),
            "endsAt": _iso(self.ends_at),
            "createdBy": CREATED_BY,
            "comment": f"{self.comment} [{TAG} {self.key}]",
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def desired_silences(inventory: Inventory, ledger: Exclusions, now: float, horizon: float) -> list[Silence]:
    out = []
    for customer in inventory.customers:
        for service in customer.services:
            for exclusion, (start, end) in ledger.windows(customer.id, service, (now, now + horizon), customer.zone):
                if exclusion.reason != "maintenance" or end <= now:
                    continue
                matchers = (("audience", "customer"), ("customer", customer.id), ("service", service))
                digest = hashlib.sha256(json.dumps([matchers, start, end]).encode()).hexdigest()[:12]
                key = f"{exclusion.id}/{service}/{int(start)}/{digest}"
                comment = f"Agreed maintenance {exclusion.id} ({exclusion.reference or 'no reference'})"
                out.append(Silence(key, matchers, start, end, comment))
    return out


@dataclass(frozen=True)
class SyncResult:
    created: tuple[str, ...]
    expired: tuple[str, ...]
    kept: tuple[str, ...]


class SilenceClient:
    """Alertmanager API v2 (silences only)."""

    def __init__(self, url: str, session: requests.Session | None = None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.session = session or requests.Session()
        self.timeout = timeout

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, f"{self.url}{path}", timeout=self.timeout, **kwargs)
        except requests.RequestException as err:
            raise AlertmanagerError(f"{method} {self.url}{path}: {type(err).__name__}") from err
        if response.status_code >= 300:
            raise AlertmanagerError(f"{method} {self.url}{path}: HTTP {response.status_code} {response.text[:200]}")
        return response

    def ours(self) -> dict[str, str]:
        """Active or pending silences threenines created: key → silence id."""
        out = {}
        for silence in self._request("GET", "/api/v2/silences").json():
            comment = silence.get("comment", "")
            if silence.get("createdBy") != CREATED_BY or f"[{TAG} " not in comment:
                continue
            if silence.get("status", {}).get("state") == "expired":
                continue
            out[comment.rsplit(f"[{TAG} ", 1)[1].rstrip("]")] = silence["id"]
        return out

    def create(self, silence: Silence) -> str:
        return str(self._request("POST", "/api/v2/silences", json=silence.body()).json()["silenceID"])

    def expire(self, silence_id: str) -> None:
        self._request("DELETE", f"/api/v2/silence/{silence_id}")


def sync(client: SilenceClient, desired: list[Silence]) -> SyncResult:
    existing = client.ours()
    wanted = {s.key: s for s in desired}
    created = [key for key in wanted if key not in existing]
    for key in created:
        client.create(wanted[key])
    expired = [key for key in existing if key not in wanted]
    for key in expired:
        client.expire(existing[key])
    kept = [key for key in wanted if key in existing]
    return SyncResult(tuple(created), tuple(expired), tuple(kept))
