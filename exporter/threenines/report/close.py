"""Month close: an immutable JSON snapshot with a content hash, so billing never recomputes from downsampled
or expired data. Closing again compares instead of overwriting: same content → same hash; a difference (a
changed exclusions ledger, late data) is reported field by field and the closed file is left as it was."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from threenines.report.schema import Statement


def canonical(statement: Statement) -> bytes:
    return json.dumps(statement.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def content_hash(statement: Statement) -> str:
    return hashlib.sha256(canonical(statement)).hexdigest()


def differences(old: object, new: object, path: str = "") -> list[str]:
    """Human-readable paths where two JSON values differ (bounded to what a reviewer can read)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old or key not in new:
                out.append(f"{sub}: {'added' if key not in old else 'removed'}")
            else:
                out += differences(old[key], new[key], sub)
        return out
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{path}: {len(old)} entries → {len(new)}"]
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in differences(a, b, f"{path}[{i}]")]
    return [] if old == new else [f"{path}: {old!r} → {new!r}"]


def close_month(statement: Statement, directory: Path) -> tuple[Path, str, list[str]]:
    """Write statement-<month>.json once; on a re-run return the differences to the closed one (empty: same)."""
    if statement.status == "preview":
        raise ValueError(f"the {statement.month} statement is a preview ({'; '.join(statement.preview_reasons)})"
                         ": only a final statement is closed")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"statement-{statement.month}.json"
    digest = content_hash(statement)
    if path.exists():
        closed = json.loads(path.read_text(encoding="utf-8"))
        if closed.get("sha256") == digest:
            return path, digest, []
        found = differences(closed.get("statement"), statement.to_dict())
        return path, digest, [f"closed sha256 {closed.get('sha256')} != now {digest}", *found[:200]]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"sha256": digest, "statement": statement.to_dict()}, indent=2, sort_keys=True,
                              ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.rename(path)
    path.chmod(0o444)  # immutable by convention and by mode
    return path, digest, []
