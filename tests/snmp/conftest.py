"""One snmpsim serving every project recording for the whole snmp test module (started once: ~1 s)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.snmp.agents import FIXTURES, Agent, snmpsim


@pytest.fixture(scope="session")
def own_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    log_dir: Path = tmp_path_factory.mktemp("snmpsim-own")
    with snmpsim(sorted(FIXTURES.glob("*.snmprec")), log_dir) as agent:
        yield agent
