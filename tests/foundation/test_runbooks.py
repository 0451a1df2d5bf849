"""Every command the runbooks tell an operator to run exists: each `threenines …` line in docs/alerting.md's
runbooks parses against the real CLI, and every other command names a tool the deployment has."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from threenines.cli import build_parser

RUNBOOKS = (Path(__file__).resolve().parents[2] / "docs" / "alerting.md").read_text(encoding="utf-8")
RUNBOOKS = RUNBOOKS[RUNBOOKS.index("## Runbooks"):]
# The tools of the stack the runbooks may send an operator to (Debian packages: prometheus-alertmanager, systemd,
# sqlite3); anything else in a code span is not a command.
OTHER_TOOLS = {"amtool", "systemctl", "journalctl", "sqlite3"}
COMMANDS = [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", RUNBOOKS)
            if span.split()[0] in OTHER_TOOLS | {"threenines"}]


def test_the_runbooks_name_commands() -> None:
    assert sum(c.startswith("threenines ") for c in COMMANDS) >= 3


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("threenines ")])
def test_every_threenines_command_in_a_runbook_parses(command: str) -> None:
    argv = shlex.split(command)[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as err:
        pytest.fail(f"runbook command does not parse: {command} (exit {err.code})")
    assert callable(args.run)
