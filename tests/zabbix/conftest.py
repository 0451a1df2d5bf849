"""One real Zabbix 6.0 shared by every test in tests/zabbix (start-up is 25-55 s: the schema load dominates)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.zabbix.stack import ZabbixStack, tools_available, zabbix_stack
from threenines.zabbix.api import ZabbixApi


@pytest.fixture(scope="package")  # stopped as soon as tests/zabbix is done
def zabbix() -> Iterator[ZabbixStack]:
    missing = tools_available()
    if missing:
        pytest.fail("Zabbix test stack needs the Debian packages in the Makefile's APT_PACKAGES "
                    f"(make system-deps); missing: {', '.join(missing)}")
    # Not below pytest's basetemp: pytest keeps /tmp/pytest-of-<user> at 0700 (and re-applies that when any
    # other session starts), which would lock out the service users postgres and zabbix.
    workdir = Path(tempfile.mkdtemp(prefix="threenines-zabbix-"))
    os.chmod(workdir, 0o755)
    try:
        with zabbix_stack(workdir) as stack:
            yield stack
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture()
def api(zabbix: ZabbixStack) -> Iterator[ZabbixApi]:
    with ZabbixApi(zabbix.api_url) as client:
        client.login("Admin", "zabbix")
        yield client
