"""Faults a test switches on inside a real `threenines serve`.

Used by tests/foundation/test_tick_faults.py and test_reload_atomic.py.

Python imports this module at start-up when PYTHONPATH names its directory (faultinject.serve_env sets that up).
Nothing changes unless THREENINES_FAULTS names a directory; then each function below raises, with the error the
adversarial run of issue 22 met, while a file of its fault's name exists there: the test creates and deletes it.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

FAULTS = os.environ.get("THREENINES_FAULTS")


def _raise_while(owner: type, name: str, fault: str, error: Callable[[], Exception]) -> None:
    real = getattr(owner, name)

    @functools.wraps(real)
    def faulty(*args: Any, **kwargs: Any) -> Any:
        if (Path(str(FAULTS)) / fault).exists():
            raise error()
        return real(*args, **kwargs)

    setattr(owner, name, faulty)


if FAULTS:
    from threenines.alerting.webhook import AuditWebhook
    from threenines.config.exclusions import Exclusion
    from threenines.contract.engine import ContractEngine
    from threenines.serve.process import Exporter

    # what a year-1 start with an rrule raised in every tick before the loader refused it
    _raise_while(Exclusion, "occurrences", "exclusions", lambda: ValueError("year -7972 is out of range"))
    _raise_while(ContractEngine, "tick", "contract", lambda: sqlite3.OperationalError("disk I/O error"))
    _raise_while(ContractEngine, "changes", "publish", lambda: MemoryError())
    # a loop callback of its own (the SIGHUP handler) that raises: asyncio would only have logged it
    _raise_while(Exporter, "_signal_reload", "loop", lambda: KeyError("injected: in a loop callback"))
    # a failure half-way through applying a reload (after the scheduler and the engine took the new inventory)
    _raise_while(AuditWebhook, "set_inventory", "reload-apply", lambda: RuntimeError("injected: apply failed"))
