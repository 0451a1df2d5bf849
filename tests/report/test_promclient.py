"""Prometheus client error paths (responses) — the same client runs against a real Prometheus in test_truth."""

from __future__ import annotations

import itertools

import pytest
import requests
import responses
from hypothesis import given
from hypothesis import strategies as st

from threenines.report.promclient import (
    MAX_QUERY_BYTES,
    ClientConfig,
    PrometheusBadResponse,
    PrometheusClient,
    PrometheusPartialData,
    PrometheusQueryError,
    PrometheusUnreachable,
    pack_queries,
)

URL = "http://prometheus.invalid:9090"
QUERY = f"{URL}/api/v1/query"
OK = {"status": "success", "data": {"resultType": "vector", "result": [
    {"metric": {"customer": "c1"}, "value": [1, "42"]}]}}


def client(**kw) -> tuple[PrometheusClient, list[float]]:
    sleeps: list[float] = []
    return PrometheusClient(ClientConfig(URL, retries=2, backoff=0.5, **kw), sleep=sleeps.append), sleeps


@responses.activate
def test_timeouts_are_retried_with_backoff_then_reported_as_unreachable() -> None:
    responses.post(QUERY, body=requests.exceptions.ConnectTimeout("timed out"))
    prom, sleeps = client()
    with pytest.raises(PrometheusUnreachable, match="after 3 attempts"):
        prom.vector("x", 0)
    assert sleeps == [0.5, 1.0]


@responses.activate
def test_a_5xx_is_retried_and_a_later_success_is_used() -> None:
    responses.post(QUERY, status=503, body="overloaded")
    responses.post(QUERY, json=OK)
    prom, sleeps = client()
    assert prom.vector("x", 0) == {(("customer", "c1"),): 42.0}
    assert sleeps == [0.5]


@responses.activate
def test_persistent_5xx_fails_with_the_status() -> None:
    responses.post(QUERY, status=500, json={"status": "error", "errorType": "internal", "error": "boom"})
    prom, _ = client()
    with pytest.raises(PrometheusQueryError, match="HTTP 500: boom"):
        prom.vector("x", 0)


@responses.activate
def test_a_bad_query_is_not_retried_and_names_the_query() -> None:
    responses.post(QUERY, status=400, json={"status": "error", "errorType": "bad_data", "error": "parse error"})
    prom, sleeps = client()
    with pytest.raises(PrometheusQueryError, match=r"'x\{' failed .*bad_data.*parse error"):
        prom.vector("x{", 0)
    assert sleeps == []


@responses.activate
def test_partial_data_warnings_fail_unless_allowed() -> None:
    body = {**OK, "warnings": ["store 10.0.0.1 unavailable"]}
    responses.post(QUERY, json=body)
    prom, _ = client()
    with pytest.raises(PrometheusPartialData, match=r"store 10\.0\.0\.1 unavailable"):
        prom.vector("x", 0)
    lenient, _ = client(allow_partial=True)
    assert lenient.vector("x", 0) == {(("customer", "c1"),): 42.0}
    assert lenient.warnings == ["store 10.0.0.1 unavailable"]


@responses.activate
@pytest.mark.parametrize("body", ["<html>proxy login</html>", '{"status": "success"}', '{"status": "success", '
                                  '"data": {"resultType": "vector", "result": [{"metric": {}}]}}', "[1, 2]"])
def test_malformed_answers_are_bad_responses(body: str) -> None:
    responses.post(QUERY, body=body, status=200)
    prom, _ = client()
    with pytest.raises(PrometheusBadResponse):
        prom.vector("x", 0)


@responses.activate
def test_auth_and_tenant_headers_are_sent_and_the_token_never_in_repr() -> None:
    responses.post(QUERY, json=OK)
    prom, _ = client(bearer_token="s3cret-token", headers={"X-Scope-OrgID": "tenant-a"})
    prom.vector("x", 0)
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == "Bearer s3cret-token"
    assert sent.headers["X-Scope-OrgID"] == "tenant-a"
    assert "s3cret" not in repr(prom.config)
    basic, _ = client(basic_auth=("billing", "pw-secret"))
    assert "pw-secret" not in repr(basic.config)


@responses.activate
def test_a_scalar_where_a_vector_is_expected_is_refused() -> None:
    responses.post(QUERY, json={"status": "success", "data": {"resultType": "scalar", "result": [1, "1"]}})
    prom, _ = client()
    with pytest.raises(PrometheusBadResponse, match="expected a vector"):
        prom.vector("1", 0)


@responses.activate
def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_quoted() -> None:
    # issue 22: `threenines report --prometheus http://user:password@…` echoed the password in its error.
    responses.post(QUERY, status=500, body="boom")
    responses.post(QUERY, json=OK)
    secret_client = PrometheusClient(ClientConfig("http://ops:zq%2Fs3cret@prometheus.invalid:9090", retries=2,
                                                  backoff=0.0), sleep=lambda _: None)
    assert secret_client.vector("up", 1) == {(("customer", "c1"),): 42.0}
    assert responses.calls[0].request.headers["Authorization"] == "Basic b3BzOnpxL3MzY3JldA=="  # ops:zq/s3cret
    assert secret_client.base == URL


def test_an_unreachable_prometheus_with_credentials_in_its_url_is_named_without_them(
        capsys: pytest.CaptureFixture[str]) -> None:
    from threenines.cli import main

    # a real refused connection on loopback, through the command a user runs
    code = main(["report", "--month", "2026-11", "--prometheus", "http://ops:zq-s3cret-4417@127.0.0.1:1",
                 "--customer", "x"])
    out = capsys.readouterr()
    assert code != 0 and "http://127.0.0.1:1" in out.err
    assert "zq-s3cret-4417" not in out.err + out.out


@given(st.lists(st.text(alphabet="abcdé{}\"=~ ", min_size=1, max_size=9000), max_size=60),
       st.integers(min_value=1, max_value=50))
def test_packed_queries_keep_every_term_in_order_within_the_engine_limit(terms: list[str], max_terms: int) -> None:
    # VictoriaMetrics refuses a query over -search.maxQueryLen (16 KiB by default): the report's `or`-batches
    # (outage bounds, resets) are packed by bytes, not by count (the bounds query reached 60,100 bytes at 250
    # outages when it was cut every 300 terms). The alphabet has no " or ", so each query splits back into terms.
    queries = pack_queries(terms, max_terms)
    parts = [q.split(" or ") for q in queries]
    assert [term for part in parts for term in part] == terms
    for query, part in zip(queries, parts, strict=True):
        assert len(part) <= max_terms
        assert len(query.encode()) <= MAX_QUERY_BYTES or len(part) == 1  # only a term too long alone exceeds
    for (a, part_a), (_, part_b) in itertools.pairwise(zip(queries, parts, strict=True)):
        # as few queries as the limits allow: the next query's first term did not fit into this one
        fits = len(a.encode()) + len(" or ") + len(part_b[0].encode()) <= MAX_QUERY_BYTES
        assert not fits or len(part_a) == max_terms
