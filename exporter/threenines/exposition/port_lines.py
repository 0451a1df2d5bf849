"""The per-port probe families' lines, formatted from the ports' packed records (the reference of _port_lines.c).

`port_lines(names, labels, records)` gives the six families' lines (without their HELP/TYPE) for the ports whose
label strings and records are given, in order: a port with no record yet has no lines, `rtt` only once a request
was answered, `loss` and `last` only once a probe finished with an answer. The C module (`_port_lines.c`, built
when a compiler is present at install, like the prober's wire) gives the same bytes for a fifth of the CPU; a
property test holds them equal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from threenines.probes.ping_scheduler import ProbeRecord, unpack_record

PortLines = Callable[[tuple[str, ...], list[str], list[ProbeRecord | None]], list[bytes]]


def python_port_lines(names: tuple[str, ...], labels: list[str], records: list[ProbeRecord | None]) -> list[bytes]:
    probes, failures_, errors_, rtt_, loss_, last_ = names
    columns: list[list[str]] = [[] for _ in names]
    total_lines, failure_lines, error_lines, rtt_lines, loss_lines, last_lines = columns
    for n, record in zip(labels, records, strict=True):
        if record is None:
            continue  # not published yet: no lines
        total, failures, errors, last_at, rtt, loss = unpack_record(record)
        # Counts as the floats they are: f"{n}.0" is repr(float(n)) below 10**16, for less.
        total_lines.append(f"{probes}{n} {total}.0\n")
        failure_lines.append(f"{failures_}{n} {failures}.0\n")
        error_lines.append(f'{errors_}{n[:-1]},reason="send_failed"}} {errors}.0\n')
        if rtt == rtt:  # NaN: none answered yet
            rtt_lines.append(f"{rtt_}{n} {rtt!r}\n")
        if loss == loss:
            loss_lines.append(f"{loss_}{n} {loss!r}\n")
            last_lines.append(f"{last_}{n} {last_at!r}\n")
    return ["".join(lines).encode() for lines in columns]


def _native() -> PortLines | None:
    try:
        from threenines.exposition import _port_lines  # type: ignore[attr-defined]  # C extension, no stub
    except ImportError:
        return None
    return cast(PortLines, _port_lines.port_lines)


native_port_lines = _native()
port_lines: PortLines = native_port_lines or python_port_lines

