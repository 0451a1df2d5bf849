"""Prometheus HTTP API client (also Thanos/Mimir): timeouts, retries with backoff, TLS, auth, extra headers.

Every failure is an exception that says what went wrong and where; nothing degrades into an empty answer,
so a report can never read "no outage" because Prometheus was not there. Credentials are never put in
messages or reprs.
"""

from __future__ import annotations

import logging
import re
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

# VictoriaMetrics' defaults (1.79, Debian bookworm) for the flags a month-long report runs into: /flags lists
# only flags set on the command line, so an absent flag has this value.
VM_DEFAULTS = {"search.maxQueryLen": "16384", "search.maxPointsPerTimeseries": "30000", "retentionPeriod": "1",
               "dedup.minScrapeInterval": "0s"}
MONTH_DAYS = 31  # VictoriaMetrics counts a -retentionPeriod month as 31 days
BILLING_RETENTION_MONTHS = 13  # a disputed invoice is looked at up to a year later (docs/ha.md)
BILLING_RETENTION_DAYS = 395  # 13 months of 30.4 days: Prometheus' customary 400d passes
_SIZE_UNITS = {"": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_RETENTION_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
# VictoriaMetrics' own words for the two refusals a month-long query meets with its default flags
_VM_TOO_MANY_POINTS = re.compile(r"too many points for the given step=(\d+), start=(\d+) and end=(\d+)")
_VM_TOO_LONG = re.compile(r"too long query; got (\d+) bytes")


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


@dataclass(frozen=True)
class Engine:
    """Which query engine answers at the URL, and (VictoriaMetrics) the flags that bound what it answers."""

    name: str  # "Prometheus", "VictoriaMetrics" or "unknown" (Thanos, Mimir, a proxy: Prometheus' API assumed)
    version: str = ""
    flags: Mapping[str, str] = field(default_factory=dict)  # VictoriaMetrics' /flags (only those set)
    flags_read: bool = False  # False: /flags was not readable (e.g. -flagsAuthKey), defaults are assumed

    @property
    def victoriametrics(self) -> bool:
        return self.name == "VictoriaMetrics"

    def flag(self, name: str) -> str:
        return self.flags.get(name, VM_DEFAULTS.get(name, ""))

    @property
    def max_query_bytes(self) -> int | None:
        return _size(self.flag("search.maxQueryLen")) if self.victoriametrics else None

    @property
    def retention_seconds(self) -> float | None:
        return _retention(self.flag("retentionPeriod")) if self.victoriametrics else None

    def describe(self) -> str:
        text = f"{self.name} {self.version or '(version not stamped in this build)'}"
        if self.victoriametrics:
            shown = ", ".join(f"-{name}={self.flag(name)}" for name in sorted(VM_DEFAULTS))
            text += f" [{shown}{'' if self.flags_read else '; /flags not readable, defaults assumed'}]"
        return text

    def check(self, oldest: float, now: float) -> tuple[list[str], list[str]]:
        """(errors, warnings) for a report that reads samples back to `oldest`: VictoriaMetrics deletes what is
        older than -retentionPeriod, and a billing store must keep 13 months."""
        retention = self.retention_seconds
        if retention is None:
            return [], []
        errors, warnings = [], []
        if now - retention > oldest:
            months = int((now - oldest) // (MONTH_DAYS * 86400)) + 1
            errors.append(f"VictoriaMetrics keeps -retentionPeriod={self.flag('retentionPeriod')}: the samples this "
                          f"report needs (from {_iso(oldest)}) are older and deleted or being deleted; restart it "
                          f"with -retentionPeriod={max(months, BILLING_RETENTION_MONTHS)} (months) or more")
        elif retention < BILLING_RETENTION_DAYS * 86400:
            warnings.append(f"VictoriaMetrics keeps -retentionPeriod={self.flag('retentionPeriod')}, less than the "
                            f"{BILLING_RETENTION_MONTHS} months a disputed invoice needs: set "
                            f"-retentionPeriod={BILLING_RETENTION_MONTHS}")
        if self.flag("dedup.minScrapeInterval") in ("0", "0s", ""):
            warnings.append("VictoriaMetrics runs without -dedup.minScrapeInterval: with an HA pair of Prometheus "
                            "writing to it, set it to the scrape interval (docs/ha.md)")
        return errors, warnings


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
        self.engine: Engine | None = None  # set by detect_engine(); then queries are checked against its limits

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
        """Raw samples of a range selector evaluated at a Unix time, e.g. 'x[3600s]': {labels: [(t, v)]}.

        An `@ t` on the selector must be the query's own time: VictoriaMetrics (1.79) ignores `@` on a bare
        range selector or subquery and returns the window ending at the query's time instead (inside a function,
        e.g. resets(x[1h] @ t), it honours it). Asking otherwise is a bug here, not a question for the engine.
        """
        pinned = _PINNED.search(expr)
        if pinned and float(pinned.group(1)) != float(at):
            raise ValueError(f"{expr!r} is pinned at @ {pinned.group(1)} but asked at {_ts(at)}: VictoriaMetrics "
                             "would return the window ending at the query's time; ask at the pinned time")
        kind, result = self.query(expr, at)
        if kind != "matrix":
            raise PrometheusBadResponse(f"{expr!r} returned a {kind}, expected a matrix (a range selector)")
        return _matrix(result, expr)

    def detect_engine(self) -> Engine:
        """Ask which engine answers: VictoriaMetrics' /metrics has vm_app_version (its buildinfo is empty in
        Debian's build and imitates Prometheus 2.24 in later ones, so buildinfo alone cannot tell), Prometheus'
        has prometheus_build_info; anything else (Thanos, Mimir, a proxy without /metrics) is "unknown" and
        treated as Prometheus. For VictoriaMetrics the flags that bound a report are read from /flags."""
        build = self._get("/api/v1/status/buildinfo")
        version = ""
        if build is not None:
            try:
                data = build.json().get("data") or {}
                version = str(data.get("version") or "") if isinstance(data, dict) else ""
            except ValueError:
                version = ""
        metrics = self._get("/metrics")
        text = metrics.text if metrics is not None else ""
        vm = re.search(r'^vm_app_version\{[^}]*short_version="([^"]*)"', text, re.MULTILINE)
        if vm or "vm_app_version{" in text:
            flags_page = self._get("/flags")
            flags = dict(re.findall(r'^-([A-Za-z0-9_.]+)="(.*)"$', flags_page.text, re.MULTILINE)) \
                if flags_page is not None else {}
            engine = Engine("VictoriaMetrics", vm.group(1) if vm else "", flags, flags_page is not None)
        elif "prometheus_build_info{" in text:
            engine = Engine("Prometheus", version)
        else:
            engine = Engine("unknown", version)
        self.engine = engine
        return engine

    # -- transport ----------------------------------------------------------------------------------

    def _get(self, path: str) -> requests.Response | None:
        """One GET for engine detection: None when it does not answer 200 (a probe, not evidence)."""
        try:
            response = self.session.get(f"{self.base}{path}", timeout=self.config.timeout)
        except requests.exceptions.RequestException:
            return None
        with self._lock:
            self.requests_made += 1
        return response if response.status_code == 200 else None

    def _call(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        url = f"{self.base}{path}"
        limit = self.engine.max_query_bytes if self.engine else None
        size = len(params.get("query", "").encode())
        if limit is not None and size > limit:
            raise PrometheusQueryError(f"a query of {size} bytes exceeds -search.maxQueryLen={limit} of "
                                       f"VictoriaMetrics at {self.base}: restart it with -search.maxQueryLen={size} "
                                       "or more")
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
                                       f"{body.get('errorType', '?')}): {body.get('error', '')}"
                                       f"{_flag_hint(str(body.get('error', '')))}")
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


_PINNED = re.compile(r"\]\s*@\s*([0-9]+(?:\.[0-9]+)?)\s*$")  # a trailing `[..] @ t`


def _flag_hint(error: str) -> str:
    """The VictoriaMetrics flag (and value) that lets a refused query through, from its own error text."""
    points = _VM_TOO_MANY_POINTS.search(error)
    if points:
        step, start, end = (int(x) for x in points.groups())
        return (f" (VictoriaMetrics: restart it with -search.maxPointsPerTimeseries={(end - start) // step + 1} "
                "or more; docs/ha.md)")
    long = _VM_TOO_LONG.search(error)
    if long:
        return f" (VictoriaMetrics: restart it with -search.maxQueryLen={long.group(1)} or more)"
    return ""


def _size(text: str) -> int:
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMG]i?B)?\s*", text)
    if not match:
        raise ValueError(f"cannot read VictoriaMetrics' size flag value {text!r}")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2) or ""])


def _retention(text: str) -> float:
    match = re.fullmatch(r"\s*([0-9.]+)\s*([hdwy]?)\s*", text)
    if not match:
        raise ValueError(f"cannot read VictoriaMetrics' -retentionPeriod={text!r}")
    number, unit = float(match.group(1)), match.group(2)
    return number * (_RETENTION_UNITS[unit] if unit else MONTH_DAYS * 86400)  # no unit: months


def _iso(unix: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))


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


def promql_string(value: str) -> str:
    """A label value or regex inside a PromQL double-quoted string: backslash and quote escaped (the one place)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


# VictoriaMetrics' default -search.maxQueryLen: every query the report builds stays within it, so the report runs
# on an engine left at its defaults (Prometheus has no such limit).
MAX_QUERY_BYTES = 16_384


def pack_queries(terms: list[str], max_terms: int, joiner: str = " or ") -> list[str]:
    """Join terms into as few queries as fit MAX_QUERY_BYTES and max_terms terms each (a term longer than the
    limit alone is its own query; the client refuses it naming the flag)."""
    queries: list[str] = []
    current: list[str] = []
    size = 0
    for term in terms:
        extra = len(term.encode()) + (len(joiner) if current else 0)
        if current and (size + extra > MAX_QUERY_BYTES or len(current) >= max_terms):
            queries.append(joiner.join(current))
            current, size, extra = [], 0, len(term.encode())
        current.append(term)
        size += extra
    if current:
        queries.append(joiner.join(current))
    return queries
