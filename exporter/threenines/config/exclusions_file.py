"""Safe edits of the exclusions ledger file (exclusions.yml) for `threenines maintenance add/remove`.

The file is the operators' record, with their comments, so it is edited as text: a new entry is appended to
the `exclusions:` list, a removed one is cut out by the lines the loader located it on; nothing else changes.
Every edit is validated by the same loader the exporter and the report use (same located errors) before it
replaces the file, under an exclusive lock (a sibling `.lock` file, so two operators cannot interleave), by
writing a temporary file in the same directory, fsyncing it and renaming it over the old one: a crash or a
refused edit leaves the old file as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from threenines.config.configfile import ConfigError
from threenines.config.exclusions import Exclusion, Exclusions, load_exclusions

_TOP_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:")
_ITEM = re.compile(r"^(\s*)-\s")


@dataclass(frozen=True)
class NewExclusion:
    id: str
    customer: str
    services: tuple[str, ...]
    start: datetime  # aware
    end: datetime
    reason: str
    reference: str
    approved_by: str
    rrule: str | None = None

    def yaml(self, indent: str) -> list[str]:
        def scalar(text: str) -> str:
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

        lines = [f"{indent}- id: {scalar(self.id)}", f"{indent}  customer: {scalar(self.customer)}",
                 f"{indent}  services: [{', '.join(self.services)}]",
                 f"{indent}  start: {self.start.isoformat()}", f"{indent}  end: {self.end.isoformat()}",
                 f"{indent}  reason: {self.reason}", f"{indent}  reference: {scalar(self.reference)}",
                 f"{indent}  approved_by: {scalar(self.approved_by)}"]
        if self.rrule:
            lines.append(f"{indent}  rrule: {scalar(self.rrule)}")
        return lines


def local_time(text: str, zone: ZoneInfo, what: str) -> datetime:
    """An ISO 8601 time; without an offset it is wall-clock time in the contract's zone (refused when that
    wall-clock time does not exist or happens twice there, at a DST change)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not an ISO 8601 time: write e.g. 2026-12-05T01:00 (contract zone) "
                         "or 2026-12-05T01:00+01:00") from None
    if value.tzinfo is not None:
        return value
    first, second = value.replace(tzinfo=zone, fold=0), value.replace(tzinfo=zone, fold=1)
    if first.utcoffset() != second.utcoffset():
        raise ValueError(f"{what} {text} happens twice in {zone.key} (a DST change): add the offset, e.g. "
                         f"{first.isoformat()} or {second.isoformat()}")
    if datetime.fromtimestamp(first.timestamp(), zone).replace(tzinfo=None) != value:
        raise ValueError(f"{what} {text} does not exist in {zone.key} (a DST change): pick another time")
    return first


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    lock = path.with_name(path.name + ".lock")
    with open(lock, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _replace(path: Path, text: str, zones: dict[str, ZoneInfo]) -> Exclusions:
    """Validate `text` as the ledger (errors name the file and line as a load would), then swap it in."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        try:
            ledger = load_exclusions(tmp, zones)
        except ConfigError as err:  # located in the file being replaced: its lines are the new text's
            raise ConfigError(str(path), err.line, err.path, err.message) from None
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return ledger
    finally:
        tmp.unlink(missing_ok=True)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def add(path: Path, entry: NewExclusion, zones: dict[str, ZoneInfo]) -> Exclusions:
    with locked(path):
        lines = _lines(path)
        if path.exists():
            current = load_exclusions(path, zones)  # a file that does not load is not edited
            if any(ex.id == entry.id for ex in current.exclusions):
                raise ValueError(f"{path}: an exclusion with id {entry.id!r} exists already")
        head = next((i for i, line in enumerate(lines) if re.match(r"^exclusions\s*:", line)), None)
        if head is None:
            lines = ["exclusions:", *entry.yaml("  "), *lines]
        else:
            if re.match(r"^exclusions\s*:\s*\[\s*\]\s*(#.*)?$", lines[head]):
                lines[head] = "exclusions:"
            end = next((i for i in range(head + 1, len(lines)) if _TOP_KEY.match(lines[i])), len(lines))
            while end > head + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
                end -= 1  # comments and blank lines before the next key belong to it
            items = [m.group(1) for line in lines[head + 1:end] if (m := _ITEM.match(line))]
            lines[end:end] = entry.yaml(items[0] if items else "  ")
        return _replace(path, "\n".join(lines) + "\n", zones)


def remove(path: Path, ident: str, zones: dict[str, ZoneInfo]) -> Exclusion:
    with locked(path):
        current = load_exclusions(path, zones)
        entries = sorted(current.exclusions, key=lambda ex: ex.line)
        found = next((ex for ex in entries if ex.id == ident), None)
        if found is None:
            known = ", ".join(ex.id for ex in entries) or "none"
            raise ValueError(f"{path}: no exclusion with id {ident!r} (exclusions: {known})")
        lines = _lines(path)
        start = found.line - 1
        later = [ex.line - 1 for ex in entries if ex.line > found.line]
        end = later[0] if later else next((i for i in range(start + 1, len(lines)) if _TOP_KEY.match(lines[i])),
                                          len(lines))
        while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
            end -= 1
        del lines[start:end]
        _replace(path, "\n".join(lines) + "\n", zones)
        return found
