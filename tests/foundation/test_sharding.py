"""--shard i/N partitions customers across instances and keeps the devices each shard needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.foundation.exporter_process import sample, scrape, serve
from threenines.config.inventory_load import load_inventory, parse_inventory_text
from threenines.config.sharding import parse_shard, shard_inventory, shard_of

REPO = Path(__file__).resolve().parents[2]


def many_customers(count: int) -> str:
    lines = ["customers:"]
    for i in range(count):
        lines.append(f"  - {{id: cust{i}, timezone: UTC, contacts: {{version: '1', notify: [{{email: n@x.example}}]}},"
                     " ping: {interval: 2s, packets: 1, timeout: 500ms},"
                     f" ports: [{{id: p, address: 127.0.57.{i + 1}}}]}}")
    return "\n".join(lines) + "\n"


def test_shards_partition_the_customers() -> None:
    inventory = parse_inventory_text(many_customers(40))
    shards = [shard_inventory(inventory, i, 3) for i in range(3)]
    ids = [{c.id for c in s.customers} for s in shards]
    assert set().union(*ids) == {c.id for c in inventory.customers}
    assert sum(len(s) for s in ids) == 40 and all(ids)  # disjoint, none empty
    assert shards[1].customer(next(iter(ids[1]))).id in ids[1]


def test_a_shard_keeps_the_devices_and_auth_its_feeds_need() -> None:
    inventory = load_inventory(REPO / "examples" / "inventory.yml")  # acme has A/B feeds behind UPSes
    with_acme = shard_inventory(inventory, shard_of("acme", 2), 2)
    assert {d.id for d in with_acme.devices} == {"pdu-a1", "pdu-b1", "ups-a", "ups-b"}
    assert {a.id for a in with_acme.auths} == {"pdu-readonly", "ups-v2c"}
    if shard_of("globex", 2) != shard_of("acme", 2):
        assert shard_inventory(inventory, shard_of("globex", 2), 2).devices == ()


@pytest.mark.parametrize("text", ["3/3", "1", "a/b", "-1/2"])
def test_bad_shard_specs_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="INDEX/COUNT"):
        parse_shard(text)


def test_a_sharded_exporter_exports_only_its_customers(tmp_path: Path) -> None:
    config = tmp_path / "inventory.yml"
    config.write_text(many_customers(12))
    proc, port = serve(tmp_path, config, extra=["--shard", "1/3"])
    with proc:
        text = scrape(port)
    for i in range(12):
        present = sample(text, "threenines_service_up", customer=f"cust{i}") is not None
        assert present == (shard_of(f"cust{i}", 3) == 1)
