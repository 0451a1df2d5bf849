"""The merge rule for replica exporters, against a per-second model of the rule's words (hypothesis).

docs/design.md: a second is outage under `merge: all` when every vantage that has evidence for it says outage
(under `merge: any` when one does), unknown only when no vantage has evidence, up otherwise.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from threenines.contract.vantages import View, identity, merge_views, vantage_of
from threenines.intervals import Interval, intersect, measure, merge, subtract

WINDOW = (0, 200)
spans = st.lists(st.tuples(st.integers(-20, 220), st.integers(0, 60)).map(lambda p: (p[0], p[0] + p[1])),
                 max_size=6)
views = st.dictionaries(st.sampled_from("abcd"), st.tuples(spans, spans).map(lambda t: View(tuple(t[0]), tuple(t[1]))),
                        min_size=1, max_size=4)


def _seconds(intervals: list[Interval]) -> set[int]:
    return {s for a, b in intervals for s in range(max(int(a), WINDOW[0]), min(int(b), WINDOW[1]))}


def _truth(vs: dict[str, View], policy: str) -> tuple[set[int], set[int]]:
    """Outage and unknown seconds, one second at a time, from the rule's words."""
    outage, unknown = set(), set()
    for s in range(*WINDOW):
        says = []
        for view in vs.values():
            in_outage = any(a <= s < b for a, b in view.outage)
            blind = any(a <= s < b for a, b in view.no_evidence)
            if in_outage or not blind:  # an outage piece is evidence
                says.append(in_outage)
        if not says:
            unknown.add(s)
        elif (all(says) if policy == "all" else any(says)):
            outage.add(s)
    return outage, unknown


@settings(max_examples=300, deadline=None)
@given(views, st.sampled_from(["all", "any"]))
def test_the_merge_is_the_rule_second_by_second(vs: dict[str, View], policy: str) -> None:
    got = merge_views(vs, WINDOW, policy)
    want_outage, want_unknown = _truth(vs, policy)
    assert (_seconds(got.outage), _seconds(got.unknown)) == (want_outage, want_unknown)
    # up + outage + unknown = wall time, and they do not overlap
    assert measure(got.up) + measure(got.outage) + measure(got.unknown) == WINDOW[1] - WINDOW[0]
    assert measure(merge([*got.up, *got.outage, *got.unknown])) == WINDOW[1] - WINDOW[0]
    for view in vs.values():
        mine = intersect(view.outage, [WINDOW])
        if policy == "all":  # merged outage ⊆ this vantage's outage, where it has evidence
            assert not subtract(intersect(got.outage, view.evidence(WINDOW)), mine)
        else:  # merged outage ⊇ every vantage's outage
            assert not subtract(mine, got.outage)


def test_a_dead_replica_costs_no_unknown_second_and_cannot_veto_an_outage() -> None:
    alive = View(outage=((100, 190),), no_evidence=())
    dead = View(outage=(), no_evidence=((0, 150),))  # says up from 150 on
    got = merge_views({"a": alive, "b": dead}, WINDOW, "all")
    assert (got.outage, got.unknown) == ([(100, 150)], [])
    assert merge_views({"a": alive, "b": dead}, WINDOW, "any").outage == [(100, 190)]


def test_the_vantage_is_its_label_else_the_instance_and_the_replica_is_grouped_away() -> None:
    assert vantage_of({"instance": "ex1:9839", "vantage": "fra"}) == "fra"
    assert vantage_of((("instance", "ex1:9839"), ("customer", "a"))) == "ex1:9839"
    assert vantage_of({}) == ""
    one = (("instance", "ex1:9839"), ("replica", "p1"))
    two = (("instance", "ex1:9839"), ("replica", "p2"))
    assert identity(one) == identity(two) and vantage_of(one) == vantage_of(two)
