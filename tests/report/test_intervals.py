"""Interval arithmetic the billing figures rest on, checked against a per-second model with hypothesis."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from threenines.intervals import clip, intersect, measure, merge, subtract

span = st.tuples(st.integers(0, 200), st.integers(0, 60)).map(lambda p: (p[0], p[0] + p[1]))
spans = st.lists(span, max_size=12)


def seconds(intervals) -> set[int]:
    return {s for start, end in intervals for s in range(start, end)}


@settings(max_examples=300, deadline=None)
@given(spans)
def test_merge_covers_the_same_seconds_once_with_disjoint_sorted_parts(a) -> None:
    merged = merge(a)
    assert seconds(merged) == seconds(a)
    assert measure(a) == len(seconds(a))
    assert all(e1 < s2 for (_, e1), (s2, _) in itertools.pairwise(merged))
    assert all(s < e for s, e in merged)


@settings(max_examples=300, deadline=None)
@given(spans, span)
def test_clip_to_month_keeps_only_seconds_inside(a, window) -> None:
    assert seconds(clip(a, window)) == seconds(a) & set(range(*window))


@settings(max_examples=300, deadline=None)
@given(spans, spans)
def test_subtracting_exclusions_removes_each_excluded_second_exactly_once(a, b) -> None:
    assert seconds(subtract(a, b)) == seconds(a) - seconds(b)
    assert seconds(intersect(a, b)) == seconds(a) & seconds(b)
    # raw = counted + excluded, however much the exclusions overlap each other or the outages
    assert measure(a) == measure(subtract(a, b)) + measure(intersect(a, b))
