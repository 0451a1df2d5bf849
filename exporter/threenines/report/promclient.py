"""Prometheus HTTP API client (also Thanos/Mimir): timeouts, retries with backoff, TLS, auth, extra headers.

Every failure is an exception that says what went wrong and where; nothing degrades into an empty answer,
so a report can never read "no outage" because Prometheus was not there. Credentials are never put in
messages or reprs.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUS = frozenset({429, 502, 503, 504})


class PrometheusError(Exception):
    """Base class: the report cannot trust what Prometheus gave (or did not give)."""


class PrometheusUnreachable(PrometheusError):
    """No HTTP answer (connection refused, DNS, TLS, timeout) after all retries."""


class PrometheusQueryError(PrometheusError):
    """Prometheus answered with an error (bad query, 4xx/5xx)."""


class PrometheusBadResponse(PrometheusError):
    """The answer is not the Prometheus API JSON we expect (malformed JSON, wrong shape)."""


class PrometheusPartialData(PrometheusError):
    """Prometheus answered with warnings: the data may be incomplete (e.g. a store of Thanos was down)."""


@dataclass(frozen=True)
class ClientConfig:
    url: str
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.5  # seconds; doubled per retry
    verify: bool | str = True  # False, True or a CA bundle path
    cert: tuple[str, str] | None = None  # client certificate and key files
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)
    allow_partial: bool = False
    concurrency: int = 4  # queries of one report step sent at once (Prometheus runs each on its own core)
    stats: bool = False  # ask Prometheus for per-query timings and samples scanned (stats=all), kept in .trace


@dataclass
class Trace:
    """One API call: what was asked, how long it took end to end and on the server, how much came back."""

    path: str
    query: str
    seconds: float  # wall time of the HTTP call, including retries
    decode_seconds: float  # Python's JSON decoding of the answer
    response_bytes: int
    server_seconds: float | None = None  # Prometheus' execTotalTime (stats=all)
    samples: int | None = None  # Prometheus' totalQueryableSamples (stats=all)


class PrometheusClient:
    def __init__(self, config: ClientConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        # Credentials in the URL (http://user:password@host) become Basic auth and leave the URL, which every
        # message and log line quotes: they would be echoed in errors otherwise.
        self.base, url_auth = _without_userinfo(config.url.rstrip("/"))
        self._sleep = sleep
        self.session = requests.Session()
        self.session.headers.update(dict(config.headers))
        if config.bearer_token:
            self.session.headers["Authorization"] = f"Bearer {config.bearer_token}"
        if config.basic_auth or url_auth:
            self.session.auth = config.basic_auth or url_auth
        self.session.verify = config.verify
        if config.cert:
            self.session.cert = config.cert
        self.warnings: list[str] = []
        self.requests_made = 0
        self.trace: list[Trace] = []
        self._lock = threading.Lock()  # the report sends independent queries from a few threads

    def close(self) -> None:
        self.session.close()

    # -- API ----------------------------------------------------------------------------------------

    def query(self, expr: str, at: float) -> tuple[str, list[dict[str, Any]]]:
        """Instant query at a Unix time: (resultType, result)."""
        data = self._call("/api/v1/query", {"query": expr, "time": _ts(at)})
        return data["resultType"], data["result"]

    def vector(self, expr: str, at: float) -> dict[tuple[tuple[str, str], ...], float]:
        """An instant vector as {sorted label pairs (no __name__): value}."""
        kind, result = self.query(expr, at)
        if kind != "vector":
            raise PrometheusBadResponse(f"{expr!r} returned a {kind}, expected a vector")
        try:
            return {_key(item["metric"]): float(item["value"][1]) for item in result}
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise PrometheusBadResponse(f"malformed vector sample for {expr!r}: {err!r}") from err

    def matrix(self, expr: str, at: float) -> dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]:
        """Raw samples of a range selector evaluated at a Unix time, e.g. 'x[3600s]': {labels: [(t, v)]}."""
        kind, result = self.query(expr, at)
        if kind != "matrix":
            raise PrometheusBadResponse(f"{expr!r} returned a {kind}, expected a matrix (a range selector)")
        return _matrix(result, expr)

    def query_range(self, expr: str, start: float, end: float, step: float
                    ) -> dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]:
        data = self._call("/api/v1/query_range", {"query": expr, "start": _ts(start), "end": _ts(end),
                                                  "step": _ts(step)})
        if data.get("resultType") != "matrix":
            raise PrometheusBadResponse(f"query_range of {expr!r} returned {data.get('resultType')!r}")
        return _matrix(data["result"], expr)

    # -- transport ----------------------------------------------------------------------------------

    def _call(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        url = f"{self.base}{path}"
        if self.config.stats:
            params = {**params, "stats": "all"}
        began = time.perf_counter()
        attempts = self.config.retries + 1
        last: str = ""
        for attempt in range(attempts):
            if attempt:
                self._sleep(self.config.backoff * 2 ** (attempt - 1))
            with self._lock:
                self.requests_made += 1
            try:
                # POST: a fleet's label matchers make URLs longer than proxies accept.
                response = self.session.post(url, data=params, timeout=self.config.timeout)
            except requests.exceptions.SSLError as err:
                raise PrometheusUnreachable(f"TLS error talking to {self.base}: {err}") from err
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as err:
                last = f"{type(err).__name__}: {err}"
                log.warning("prometheus %s attempt %d/%d failed: %s", path, attempt + 1, attempts, last)
                continue
            if response.status_code in RETRY_STATUS or response.status_code >= 500:
                last = f"HTTP {response.status_code}: {_error_text(response)}"
                log.warning("prometheus %s attempt %d/%d failed: %s", path, attempt + 1, attempts, last)
                continue
            decoding = time.perf_counter()
            data = self._decode(response, params.get("query", ""))
            done = time.perf_counter()
            raw_stats = data.get("stats")
            stats: dict[str, Any] = raw_stats if isinstance(raw_stats, dict) else {}
            with self._lock:
                self.trace.append(Trace(path, params.get("query", ""), done - began, done - decoding,
                                        len(response.content), stats.get("timings", {}).get("execTotalTime"),
                                        stats.get("samples", {}).get("totalQueryableSamples")))
            return data
        if last.startswith("HTTP"):
            raise PrometheusQueryError(f"{self.base}{path} failed after {attempts} attempts: {last}")
        raise PrometheusUnreachable(f"cannot reach Prometheus at {self.base} after {attempts} attempts ({last}); "
                                    "check --prometheus, the network and that Prometheus is running")

    def _decode(self, response: requests.Response, expr: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError as err:
            raise PrometheusBadResponse(
                f"{response.url} answered HTTP {response.status_code} with non-JSON "
                f"({response.headers.get('Content-Type', '?')}): {response.text[:200]!r}") from err
        if not isinstance(body, dict) or "status" not in body:
            raise PrometheusBadResponse(f"{response.url} answered JSON without 'status': {str(body)[:200]}")
        if body["status"] != "success":
            raise PrometheusQueryError(f"query {expr!r} failed (HTTP {response.status_code}, "
                                       f"{body.get('errorType', '?')}): {body.get('error', '')}")
        warnings = [str(w) for w in body.get("warnings") or []]
        if warnings:
            with self._lock:
                self.warnings.extend(warnings)
            if not self.config.allow_partial:
                raise PrometheusPartialData(f"query {expr!r} returned partial data: {'; '.join(warnings)}")
        data = body.get("data")
        if not isinstance(data, dict) or "result" not in data or "resultType" not in data:
            raise PrometheusBadResponse(f"{response.url} answered success without data.result: {str(body)[:200]}")
        return data


def _ts(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _key(metric: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    # Without __name__: functions drop it and selectors keep it, and callers match the two by labels.
    return tuple(sorted((k, v) for k, v in metric.items() if k != "__name__"))


def _matrix(result: list[dict[str, Any]], expr: str) -> dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]:
    try:
        return {_key(item["metric"]): [(float(t), float(v)) for t, v in item["values"]] for item in result}
    except (KeyError, TypeError, ValueError) as err:
        raise PrometheusBadResponse(f"malformed matrix for {expr!r}: {err!r}") from err


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
        return str(body.get("error") or body)[:200]
    except ValueError:
        return response.text[:200]


def parallel(client: PrometheusClient, calls: Mapping[str, Callable[..., T]]) -> dict[str, T]:
    """Run independent queries at once: Prometheus evaluates each query on one core, so the month-long scans
    of one report step overlap instead of queueing. The first failure is raised (nothing is half-answered)."""
    workers = max(1, min(client.config.concurrency, len(calls)))
    if workers == 1:
        return {name: call() for name, call in calls.items()}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(call) for name, call in calls.items()}
        return {name: future.result() for name, future in futures.items()}


def _without_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without its user:password@ part, and that part as Basic-auth credentials (percent-decoded)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port is not None else "")
    clean = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, (urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password or ""))
