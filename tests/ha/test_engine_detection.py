"""Engine detection and VictoriaMetrics' limits in the report's client, on recorded answers (no server).

The answers are those of the real engines (Debian's victoria-metrics 1.79.5 and prometheus 2.42): the same
detection runs against both for real in test_victoriametrics.py.
"""

from __future__ import annotations

import pytest
import responses

from threenines.report.promclient import ClientConfig, Engine, PrometheusClient, PrometheusQueryError

URL = "http://engine.invalid:8428"
VM_METRICS = 'vm_app_version{version="", short_version=""} 1\nvm_rows{type="storage/big"} 0\n'
VM_FLAGS = '-httpListenAddr=":8428"\n-retentionPeriod="13"\n-search.maxPointsPerTimeseries="100000"\n'
PROM_BUILD = {"status": "success", "data": {"version": "2.42.0+ds", "revision": "x", "goVersion": "go1.19"}}
DAY = 86400


def _client() -> PrometheusClient:
    return PrometheusClient(ClientConfig(URL, retries=0))


@responses.activate
def test_victoriametrics_is_told_by_its_metrics_not_its_empty_buildinfo() -> None:
    responses.get(f"{URL}/api/v1/status/buildinfo", json={"status": "success", "data": {}})
    responses.get(f"{URL}/metrics", body=VM_METRICS)
    responses.get(f"{URL}/flags", body=VM_FLAGS)
    engine = _client().detect_engine()
    assert engine.victoriametrics and engine.flags_read
    assert engine.flag("retentionPeriod") == "13"
    assert engine.flag("search.maxQueryLen") == "16384"  # not set: VictoriaMetrics' default
    assert engine.max_query_bytes == 16384
    assert "VictoriaMetrics (version not stamped" in engine.describe()
    assert "-search.maxPointsPerTimeseries=100000" in engine.describe()


@responses.activate
def test_a_victoriametrics_imitating_prometheus_buildinfo_is_still_victoriametrics() -> None:
    responses.get(f"{URL}/api/v1/status/buildinfo", json={"status": "success", "data": {"version": "2.24.0"}})
    later = 'vm_app_version{version="victoria-metrics-v1.93.0", short_version="v1.93.0"} 1\n'
    responses.get(f"{URL}/metrics", body=later)
    responses.get(f"{URL}/flags", status=401, body="auth key required")
    engine = _client().detect_engine()
    assert (engine.name, engine.version, engine.flags_read) == ("VictoriaMetrics", "v1.93.0", False)
    assert "defaults assumed" in engine.describe()


@responses.activate
def test_prometheus_and_unknown_engines() -> None:
    responses.get(f"{URL}/api/v1/status/buildinfo", json=PROM_BUILD)
    responses.get(f"{URL}/metrics", body='prometheus_build_info{version="2.42.0+ds"} 1\n')
    engine = _client().detect_engine()
    assert (engine.name, engine.version, engine.max_query_bytes) == ("Prometheus", "2.42.0+ds", None)
    responses.replace(responses.GET, f"{URL}/metrics", status=404)
    assert _client().detect_engine().name == "unknown"  # Thanos, Mimir, a proxy: Prometheus' API assumed


def test_retention_that_no_longer_holds_the_month_is_an_error_naming_the_flag() -> None:
    now = 1_800_000_000
    default = Engine("VictoriaMetrics", flags_read=True)  # -retentionPeriod=1: 31 days
    errors, _ = default.check(now - 40 * DAY, now)
    assert errors and "-retentionPeriod=1" in errors[0] and "-retentionPeriod=13" in errors[0]
    errors, warnings = default.check(now - 10 * DAY, now)
    assert errors == [] and any("-retentionPeriod=13" in w for w in warnings)
    kept = Engine("VictoriaMetrics", flags={"retentionPeriod": "400d", "dedup.minScrapeInterval": "30s"})
    assert kept.check(now - 390 * DAY, now) == ([], [])
    assert Engine("Prometheus").check(0, now) == ([], [])


@responses.activate
def test_a_query_over_maxquerylen_is_refused_before_it_is_sent() -> None:
    client = _client()
    client.engine = Engine("VictoriaMetrics", flags={"search.maxQueryLen": "1KiB"})
    with pytest.raises(PrometheusQueryError, match=r"1025 bytes exceeds -search.maxQueryLen=1024 .*=1025"):
        client.vector("x" * 1025, 0)
    assert client.requests_made == 0


@responses.activate
def test_victoriametrics_refusals_name_the_flag_and_value() -> None:
    error = ("error when executing query=\"x > 0\" on the time range (start=1788282000000, end=1790982000000, "
             "step=60000): too many points for the given step=60000, start=1788282000000 and end=1790982000000: "
             "45001; cannot exceed -search.maxPointsPerTimeseries=30000")
    responses.post(f"{URL}/api/v1/query", status=422, json={"status": "error", "errorType": "422", "error": error})
    with pytest.raises(PrometheusQueryError, match=r"-search\.maxPointsPerTimeseries=45001 or more"):
        _client().vector("x", 0)


def test_a_raw_window_must_be_asked_at_its_own_time() -> None:
    with pytest.raises(ValueError, match="ask at the pinned time"):
        _client().matrix("x[3600s] @ 1000", 2000)
