"""How `make test` shares the suite between pytest-xdist workers (`-n 2`).

Most of the suite waits on real processes (probe intervals, scrapes, Alertmanager's timers), so two workers
overlap those waits. Each test module is one work unit, so a module-scoped fixture (a backfilled Prometheus, a
built .deb) is made once. The modules that change host-wide state (network namespaces, nftables tables, routes,
/etc, /var/lib, dpkg: marked `netns` or `system`) form one unit, run one after another on one worker, never
beside each other. tests/zabbix/test_end_to_end.py is one of them: the Zabbix stack (a package fixture) then
starts on both workers, ~12 s of set-up that buys the rest of tests/zabbix (~90 s) a place beside the host unit.

xdist's own `--dist loadgroup` (an `xdist_group` mark) does not work with pytest 9: it renames `item._nodeid`,
which pytest 9 no longer reads, so every test became its own unit. The scheduler below groups by module path
instead, which the controller knows without collecting; a module is host-wide when its source carries one of
the marks, and collection fails if a marked test sits in a module that this scan would not find.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOST_UNIT = "host-wide state"
HOST_MARKS = ("netns", "system")


@functools.cache
def changes_host(module: Path) -> bool:
    try:
        source = module.read_text(encoding="utf-8")
    except OSError:
        return False
    return any(f"pytest.mark.{mark}" in source for mark in HOST_MARKS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(mark) for mark in HOST_MARKS) and not changes_host(item.path):
            raise pytest.UsageError(f"{item.nodeid} is marked {HOST_MARKS} but its module does not say "
                                    "`pytest.mark.netns` / `pytest.mark.system`: tests/conftest.py would run it "
                                    "beside other host-wide tests")


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class ModulesAndHostUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return HOST_UNIT if changes_host(ROOT / module) else module

        def _assign_work_unit(self, node: object) -> None:
            # The host unit is the longest chain that cannot be split (about half the suite's time): first.
            if HOST_UNIT in self.workqueue:
                self.workqueue.move_to_end(HOST_UNIT, last=False)
            super()._assign_work_unit(node)

    return ModulesAndHostUnit(config, log)
