"""The per-port probe families' lines, formatted from the ports' packed records (the reference of _port_lines.c).

`port_lines(names, labels, records, previous)` gives the six families' lines (without their HELP/TYPE) for the
ports whose label strings and records are given, in order: a port with no record yet has no lines, `rtt` only once
a request was answered, `loss` and `last` only once a probe finished with an answer. With `previous` (the records
the same ports had when these lines were last made), a family none of whose lines would change is None instead:
a probe that is answered changes its port's count, RTT and time, but its failures, errors and loss stay, so the
renderer formats and compresses three families of six. The C module (`_port_lines.c`, built when a compiler is
present at install, like the prober's wire) gives the same result for a fifth of the CPU; a property test holds
them equal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from threenines.probes.ping_scheduler import ProbeRecord, unpack_record

PortLines = Callable[[tuple[str, ...], list[str], list[ProbeRecord | None], list[ProbeRecord | None] | None],
                     list[bytes | None]]

# Where each family's value sits in a record ("=3q3d": total, failures, errors, last_at, rtt, loss): a family's
# lines change when these bytes do. `last` is written only while `loss` is a number, so it also reads whether it is.
_FIELDS = ((0, 8), (8, 16), (16, 24), (32, 40), (40, 48), (24, 32))


def changed_families(previous: ProbeRecord | None, record: ProbeRecord | None) -> list[bool]:
    """Which of the six families' lines differ between a port's two records (bytes compared, so NaN equals NaN)."""
    if previous is None or record is None:
        return [previous is not record] * 6
    changed = [previous[start:end] != record[start:end] for start, end in _FIELDS]
    old_loss, new_loss = unpack_record(previous)[5], unpack_record(record)[5]
    # loss NaN <-> a number adds or removes the `last` line too
    changed[5] = changed[5] or (old_loss != old_loss) != (new_loss != new_loss)
    return changed


def python_port_lines(names: tuple[str, ...], labels: list[str], records: list[ProbeRecord | None],
                      previous: list[ProbeRecord | None] | None = None) -> list[bytes | None]:
    if previous is not None and len(previous) != len(records):
        raise ValueError("port_lines: as many previous records as records expected")
    wanted = [previous is None] * 6
    if previous is not None:
        for old, new in zip(previous, records, strict=True):
            wanted = [w or c for w, c in zip(wanted, changed_families(old, new), strict=True)]
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
    return ["".join(lines).encode() if want else None for lines, want in zip(columns, wanted, strict=True)]


def _native() -> PortLines | None:
    try:
        from threenines.exposition import _port_lines  # type: ignore[attr-defined]  # C extension, no stub
    except ImportError:
        return None
    return cast(PortLines, _port_lines.port_lines)


native_port_lines = _native()
port_lines: PortLines = native_port_lines or python_port_lines
