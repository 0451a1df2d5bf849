"""The per-port probe lines in C (exposition/_port_lines.c) are byte-for-byte those of the Python reference."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threenines.config.inventory import TargetKey
from threenines.exposition.contract import labels
from threenines.exposition.port_lines import native_port_lines, python_port_lines
from threenines.probes.ping_scheduler import ScheduledPortView

NAMES = ("threenines_probe_total", "threenines_probe_failures_total", "threenines_probe_errors_total",
         "threenines_probe_rtt_seconds", "threenines_probe_loss_ratio", "threenines_probe_last_timestamp_seconds")
counts = st.integers(0, 2**53)
# RTTs are whole nanoseconds (the wires' stamps), which the C formatter writes without dtoa: around the 1e-4
# switch to an exponent, at the ends of its range, and everywhere between.
nanoseconds = st.one_of(st.integers(1, 10**10).map(lambda n: n / 1e9), st.sampled_from(
    [1e-9, 99999e-9, 1e-4, 100001e-9, 0.5, 1.0, 2.0, 9.999999999, 10.0, 1.5e-05, 3.4094e-05, 1230e-9]))
seconds = st.one_of(st.none(), st.floats(0, 60, allow_nan=False), st.sampled_from([0.0, 1e-6, 5e-324, 0.1]),
                    nanoseconds)
records = st.one_of(st.none(), st.builds(
    lambda total, failures, errors, last_at, rtt, loss: ScheduledPortView(
        TargetKey("c", "connectivity", "p"), total, failures, errors, last_at, rtt, loss).encode(),
    counts, counts, counts, st.floats(0, 4e9, allow_nan=False), seconds,
    st.one_of(st.none(), st.floats(0, 1, allow_nan=False), nanoseconds.filter(lambda x: x <= 1.0))))
label_values = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
ports = st.lists(st.tuples(label_values, label_values, records), max_size=40)


def test_the_native_port_lines_are_built() -> None:
    assert native_port_lines is not None, \
        "threenines.exposition._port_lines is missing: pip install -e . with gcc present (make venv does)"


@settings(max_examples=300, deadline=None)
@given(ports, st.booleans())
def test_c_and_python_write_the_same_lines(given_ports, vantage) -> None:
    assert native_port_lines is not None
    own = {"vantage": "fra-1"} if vantage else {}
    names = [labels(**own, customer=c, target=t) for c, t, _ in given_ports]
    recs = [r for _, _, r in given_ports]
    assert native_port_lines(NAMES, names, recs) == python_port_lines(NAMES, names, recs)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(label_values, records, records), max_size=20))
def test_c_and_python_leave_out_the_same_unchanged_families(given_ports) -> None:
    assert native_port_lines is not None
    names = [labels(customer=c, target="p") for c, _, _ in given_ports]
    previous, recs = [old for _, old, _ in given_ports], [new for _, _, new in given_ports]
    assert native_port_lines(NAMES, names, recs, previous) == python_port_lines(NAMES, names, recs, previous)


def test_a_family_is_left_out_when_no_line_of_it_changes() -> None:
    """Worked from the record's fields: an answer moves the count, RTT and time; a failure the count, failures,
    loss and time; a first answer (loss was none) brings the loss and time lines; nothing new leaves all out."""
    label = ['{customer="a",target="p"}']
    up = struct.pack("=3q3d", 7, 2, 0, 100.0, 0.0015, 0.0)
    answered = struct.pack("=3q3d", 8, 2, 0, 200.0, 0.0025, 0.0)
    failed = struct.pack("=3q3d", 8, 3, 0, 200.0, 0.0015, 1.0)
    unanswered = struct.pack("=3q3d", 1, 1, 0, 0.0, math.nan, math.nan)
    first = struct.pack("=3q3d", 2, 1, 0, 0.0, 0.0015, 0.5)
    for lines in (python_port_lines, native_port_lines):
        assert lines is not None
        present = [[text is not None for text in lines(NAMES, label, [new], [old])]
                   for old, new in ((up, answered), (answered, failed), (unanswered, first), (up, up), (None, up))]
        assert present == [[True, False, False, True, False, True],
                           [False, True, False, True, True, False],
                           [True, False, False, True, True, True],
                           [False] * 6,
                           [True] * 6]


def test_what_the_lines_say() -> None:
    """Values from the record, not from either implementation: counts as floats, NaN for none leaves lines out."""
    record = struct.pack("=3q3d", 7, 2, 1, 1790812800.25, 0.0015, 0.5)
    unanswered = struct.pack("=3q3d", 1, 1, 0, 1790812900.0, math.nan, math.nan)
    lines = [b.decode() for b in python_port_lines(NAMES, ['{customer="a",target="p"}', '{customer="b",target="q"}'],
                                                   [record, unanswered])]
    assert lines[0] == ('threenines_probe_total{customer="a",target="p"} 7.0\n'
                        'threenines_probe_total{customer="b",target="q"} 1.0\n')
    assert lines[2].splitlines()[0] == 'threenines_probe_errors_total{customer="a",target="p",reason="send_failed"} 1.0'
    assert lines[3] == 'threenines_probe_rtt_seconds{customer="a",target="p"} 0.0015\n'
    assert lines[4] == 'threenines_probe_loss_ratio{customer="a",target="p"} 0.5\n'
    assert lines[5] == 'threenines_probe_last_timestamp_seconds{customer="a",target="p"} 1790812800.25\n'
    if native_port_lines is not None:
        assert [b.decode() for b in native_port_lines(NAMES, ['{customer="a",target="p"}',
                                                               '{customer="b",target="q"}'],
                                                      [record, unanswered])] == lines


def test_the_native_port_lines_refuse_what_is_not_a_record() -> None:
    assert native_port_lines is not None
    with pytest.raises(ValueError, match="48 bytes"):
        native_port_lines(NAMES, ['{a="1"}'], [b"short"])
    with pytest.raises(ValueError, match="as many records"):
        native_port_lines(NAMES, ['{a="1"}'], [])
    with pytest.raises(ValueError, match="end with"):
        native_port_lines(NAMES, ["nolabels"], [struct.pack("=3q3d", 0, 0, 0, 0.0, 0.0, 0.0)])


def test_neighbours_sharing_a_stamp_each_get_their_own_value() -> None:
    """The C lines reuse the text of a value equal (bit for bit) to the previous line's: ports one read finished
    share their stamp. A value that differs, even only in sign (-0.0), gets its own text."""
    assert native_port_lines is not None
    stamps = [1790812800.25, 1790812800.25, 1790812801.5, 1790812800.25, 0.0, -0.0, 0.0]
    recs = [struct.pack("=3q3d", 1, 0, 0, stamp, 0.001, 0.0 if i % 2 else -0.0) for i, stamp in enumerate(stamps)]
    names = [labels(customer=f"c{i}", target="p") for i in range(len(stamps))]
    lines = native_port_lines(NAMES, names, recs)
    assert lines == python_port_lines(NAMES, names, recs)
    assert [line.split()[-1] for line in lines[5].decode().splitlines()] == [repr(stamp) for stamp in stamps]
    assert [line.split()[-1] for line in lines[4].decode().splitlines()] == ["-0.0", "0.0"] * 3 + ["-0.0"]
