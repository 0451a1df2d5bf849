"""The query the template 'threenines merged by Prometheus' sends, run on a real Prometheus holding two replica
exporters' day with the shipped merge rules backfilled over it (tests/grafana/vantage_day.py), under each policy
the exporters can export. The expected states are the contract's merge rule (docs/design.md "Replica exporters",
docs/ha.md "Merged views") applied by hand to the day's stories at its last second, not the rules' output.
tests/zabbix/test_merged_end_to_end.py runs the same query live, from Zabbix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.grafana.grafana_queries import api
from tests.grafana.merged_rules import serve_with_merged_rules
from tests.grafana.vantage_day import END, START, STEP, THRESHOLD, vantage_day
from tests.promdata import Prom
from threenines.dashboards import merge
from threenines.zabbix.templates import EXPORTERS, KIND_TAG, MERGED_QUERY

ALL, ANY = "all", "any"
MINUTE = 60


@pytest.fixture(scope="module", params=[ALL, ANY])
def policy(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory, policy: str) -> Iterator[Prom]:
    with serve_with_merged_rules(vantage_day(policy), tmp_path_factory.mktemp(f"zabbix-merged-{policy}"),
                                 START, END, STEP) as running:
        yield running


def answer(prom: Prom) -> dict[tuple[str, ...], float]:
    """The query's result at the day's end: (series name or the exporter count's tag, its labels...) -> value."""
    data = api(prom.url, "/api/v1/query", {"query": MERGED_QUERY, "time": END})
    assert isinstance(data, dict) and data["resultType"] == "vector"
    out: dict[tuple[str, ...], float] = {}
    for one in data["result"]:
        labels = dict(one["metric"])
        name = labels.pop("__name__", None) or labels.pop(KIND_TAG)
        key = (name, *(labels[k] for k in ("customer", "service", "target") if k in labels))
        assert key not in out, key
        out[key] = float(one["value"][1])
    return out


def test_the_query_returns_every_merged_record_and_the_exporter_count(prom: Prom) -> None:
    names = {key[0] for key in answer(prom)}
    assert names == {*merge.RULES, EXPORTERS}


def test_the_merged_state_is_the_contracts_rule_under_each_policy(prom: Prom, policy: str) -> None:
    got = answer(prom)
    # acme: both vantages up at the day's end.
    # globex: a has determined an outage (first failed 23:35, determined 5 min later); b says up but is blind for
    #   the site (its canaries fail), so it has no evidence and holds nothing back: down under both policies.
    # initech: a says up, b has determined an outage (first failed 23:45): under `all` not every vantage with
    #   evidence says outage (up), under `any` one does (down).
    initech_down = policy == ANY
    for customer, target, down in (("acme", "p1", False), ("globex", "p9", True), ("initech", "p3", initech_down)):
        assert got[(merge.SERVICE_UP, customer, "connectivity")] == (0 if down else 1), customer
        assert got[(merge.SERVICE_KNOWN, customer, "connectivity")] == 1, customer
        assert got[(merge.TARGET_UP, customer, "connectivity", target)] == (0 if down else 1), customer
        assert got[(merge.TARGET_KNOWN, customer, "connectivity", target)] == 1, customer
    # The open outage's determination: the earliest among the vantages that count, 0 while up.
    determined = {key[1]: value for key, value in got.items() if key[0] == merge.TARGET_DETERMINED}
    assert determined == {"acme": 0, "globex": END - 25 * MINUTE + THRESHOLD,
                          "initech": END - 15 * MINUTE + THRESHOLD if initech_down else 0}
    # Both replicas were scraped at the day's end.
    assert got[(EXPORTERS,)] == 2
