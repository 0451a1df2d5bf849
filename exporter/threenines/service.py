"""`threenines serve`: wires inventory → probers → contract engine → ledger → published changes → HTTP.

One asyncio loop runs probes, the tick (time accrual, ledger heartbeat) and reloads. Each tick publishes what
changed as immutable views; a scrape renders them (only the lines that changed since the previous scrape)
in its HTTP thread, under a lock, and never touches the loop's objects. Nothing renders while nobody scrapes.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector

from threenines.audit import AuditLedger, AuditWebhook
from threenines.collector import ExporterChanges, HealthView, SnapshotRenderer
from threenines.configfile import ConfigError
from threenines.contract import OutageEvent, TargetKey
from threenines.deadlines import DeadlineWatch
from threenines.engine import ContractEngine, specs_from_inventory
from threenines.httpserver import ExporterHTTPServer
from threenines.inventory import Inventory, Port, load_inventory
from threenines.ledger import Ledger
from threenines.probes.ping import Pinger
from threenines.report.exclusions import Ledger as ExclusionLedger
from threenines.report.exclusions import load_ledger as load_exclusions
from threenines.scheduler import ProbeScheduler
from threenines.sharding import shard_inventory
from threenines.webconfig import load_web_config

log = logging.getLogger(__name__)

# Publish promptly after an outage event (alerts fire at the first evaluation after determination), but
# at most once a second however many events a mass outage brings.
MIN_TICK_SPACING = 1.0
# Alertmanager batches alerts per group; even a large group's payload stays far below this.
MAX_AUDIT_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ServeOptions:
    config: Path
    listen: str | None = None
    state_dir: Path | None = None
    tick: float = 15.0
    privileged: bool | None = None
    exclusions: Path | None = None
    web_config: Path | None = None
    shard: tuple[int, int] = (0, 1)


def ports_of(inventory: Inventory) -> dict[TargetKey, Port]:
    return {TargetKey(c.id, "connectivity", p.id): p for c, p in inventory.ports()}


def ip_versions(inventory: Inventory) -> tuple[int, ...]:
    """The ICMP socket families the inventory's ports need (IPv4 at least, so a first port can be added)."""
    return tuple(sorted({p.family for _, p in inventory.ports()} | {4}))


def _settle_heap() -> None:
    """Exempt the long-lived state (machines, stats, rendered lines) from the cyclic garbage collector.

    At 50k ports that state is millions of objects, and every full collection walked all of them: it cost more
    CPU than probing did. What a reload replaced is collected once here, then the rest is frozen again.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class Exporter:
    def __init__(self, options: ServeOptions, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self._clock = clock
        self.inventory = self._load_inventory()  # ConfigError propagates: fail fast at start
        self.exclusions = self._load_exclusions(self.inventory)
        state_dir = options.state_dir or Path(self.inventory.exporter.state_dir)
        self.ledger = Ledger(state_dir / "outages.sqlite")
        # An outage event is published promptly: alerts fire at the first evaluation after determination.
        self.engine = ContractEngine(self.ledger, on_event=self._outage_event)
        self.engine.configure(specs_from_inventory(self.inventory), clock())
        self.scheduler = ProbeScheduler(lambda done: Pinger(done, privileged=options.privileged),
                                        self.engine.observe, self.inventory.exporter.max_concurrent_probes, clock)
        self.pinger = self.scheduler.pinger
        self._probe_layout: tuple[TargetKey, ...] | None = self._configure_probes(self.inventory)
        self.registry = CollectorRegistry(auto_describe=False)
        self._renderer = SnapshotRenderer()
        ProcessCollector(registry=self.registry)
        self._pending: ExporterChanges | None = None  # published by the loop, taken by the next render
        self._pending_lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._rendered: list[bytes] = []
        self._render_seconds = 0.0
        self._reload_ok = True
        self._reload_at = clock()
        self._last_tick = 0.0
        self._stop = asyncio.Event()
        self._dirty = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._power: tuple[object, asyncio.Task[None], asyncio.Event] | None = None
        host, port = split_listen(options.listen or self.inventory.exporter.listen)
        web = load_web_config(options.web_config) if options.web_config else None
        self.http = ExporterHTTPServer(host, port, self._exposition, self._health,
                                       max_post_bytes=MAX_AUDIT_BODY_BYTES, web=web)
        self.http.add_post("/-/reload", self._http_reload)
        token_ref = self.inventory.exporter.audit_token
        token = token_ref.resolve() if token_ref is not None else None  # SecretError: fail at start
        if token is None:
            log.warning("exporter.audit_token is not set: the audit webhook accepts unauthenticated posts")
        self.audit = AuditWebhook(AuditLedger(state_dir / "audit.sqlite"), token, MAX_AUDIT_BODY_BYTES,
                                  self.inventory, clock, on_record=self._audit_recorded)
        self.registry.register(self.audit.collector)
        self.http.add_post("/alertmanager/webhook", self.audit.handle, own_auth=True)
        # Each determination's notification deadline is decided when it passes (deadlines.py); outages whose
        # deadline passed while the exporter was not running are decided now.
        self.deadlines = DeadlineWatch(self.audit, self._notification_deadline)
        self.deadlines.rebuild(self.ledger, clock())

    def _outage_event(self, event: OutageEvent) -> None:
        deadlines = getattr(self, "deadlines", None)  # events during the first configure precede the watch
        if deadlines is not None:
            deadlines.observe(event)
        self._dirty.set()

    def _notification_deadline(self, customer_id: str) -> float | None:
        customer = next((c for c in self.inventory.customers if c.id == customer_id), None)
        return customer.notification_deadline if customer is not None else None

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.pinger.open(ip_versions(self.inventory))
        self._start_power(self.inventory)
        self._tick()
        await self._loop.run_in_executor(None, self._exposition)  # the first scrape finds it rendered
        _settle_heap()
        self.http.start()
        host, port = self.http.address
        log.info("listening on %s://%s:%d/metrics (%d targets, %d customers)", self.http.scheme, host, port,
                 len(self.engine.keys), len(self.inventory.customers))
        for sig, action in ((signal.SIGHUP, self._signal_reload), (signal.SIGTERM, self._stop.set),
                            (signal.SIGINT, self._stop.set)):
            self._loop.add_signal_handler(sig, action)
        tasks = [asyncio.create_task(self.scheduler.run(self._stop), name="probes"),
                 asyncio.create_task(self._ticker(), name="tick")]
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._stop_power()
            self._tick()
            self.http.stop()
            self.pinger.close()
            self.ledger.close()
            self.audit.ledger.close()
            log.info("stopped")

    def stop(self) -> None:
        self._stop.set()

    # -- evidence, time and rendering ---------------------------------------------------------------

    def _load_inventory(self) -> Inventory:
        return shard_inventory(load_inventory(self.options.config), *self.options.shard)

    # -- exclusions ----------------------------------------------------------------------------------

    def _load_exclusions(self, inventory: Inventory) -> ExclusionLedger | None:
        if self.options.exclusions is None:
            return None
        return load_exclusions(self.options.exclusions, {c.id: c.zone for c in inventory.customers})

    def _active_exclusions(self, now: float) -> tuple[tuple[str, str, str, bool], ...]:
        """Which exclusion reasons are active now, for each customer/service the ledger names."""
        if self.exclusions is None:
            return ()
        active: dict[tuple[str, str, str], bool] = {}
        for exclusion in self.exclusions.exclusions:
            try:
                zone = self.inventory.customer(exclusion.customer).zone
            except KeyError:
                continue  # the customer left the inventory
            on = bool(exclusion.occurrences((now, now + 1), zone))
            for service in exclusion.services:
                key = (exclusion.customer, service, exclusion.reason)
                active[key] = active.get(key, False) or on
        return tuple((*key, on) for key, on in sorted(active.items()))

    # -- power (SNMP) --------------------------------------------------------------------------------

    def _start_power(self, inventory: Inventory) -> None:
        """Poll the inventory's UPSes and PDUs; pysnmp is imported only when there are devices."""
        if not inventory.devices:
            return
        from threenines.power_poller import PowerPoller

        poller = PowerPoller(inventory, self.engine.observe, self._clock)
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop), name="power")
        self.registry.register(poller.collector)
        self._power = (poller, task, stop)

    async def _stop_power(self) -> None:
        if self._power is None:
            return
        poller, task, stop = self._power
        self._power = None
        stop.set()
        try:
            await asyncio.wait_for(task, timeout=10)
        except TimeoutError:
            task.cancel()
        self.registry.unregister(poller.collector)  # type: ignore[attr-defined]

    def _audit_recorded(self) -> None:
        # Called from an HTTP thread: ask the loop to re-render so the delay metrics show promptly.
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._dirty.set)

    def _configure_probes(self, inventory: Inventory) -> tuple[TargetKey, ...]:
        ports = ports_of(inventory)
        self.scheduler.configure(ports)
        return tuple(ports)

    def _tick(self) -> None:
        now = self._clock()
        self.engine.tick(now)
        self.deadlines.check(now)
        self._last_tick = now
        scheduler = self.scheduler
        lag = scheduler.lag
        changes = ExporterChanges(
            contract=self.engine.changes(now),
            probes=scheduler.changed_stats(),
            probe_layout=self._probe_layout,
            customers=self.inventory.customers,
            health=HealthView(
                reload_successful=self._reload_ok,
                reload_success_at=self._reload_at,
                lag_counts=tuple(lag.counts),
                lag_sum=lag.total,
                in_flight=scheduler.in_flight,
                ledger_writes=(("outage", self.ledger.writes_ok, self.ledger.writes_failed),
                               ("audit", self.audit.ledger.writes_ok, self.audit.ledger.writes_failed)),
                render_seconds=self._render_seconds,
                wire=self.pinger.wire_kind,
            ),
            exclusions=self._active_exclusions(now),
        )
        self._probe_layout = None
        with self._pending_lock:
            self._pending = changes if self._pending is None else self._pending.merge(changes)

    def _exposition(self) -> list[bytes]:
        """/metrics: apply what the loop published since the last scrape, render, add the small collectors."""
        with self._render_lock:
            with self._pending_lock:
                changes, self._pending = self._pending, None
            if changes is not None:
                started = time.perf_counter()
                try:
                    self._rendered = self._renderer.render(changes)
                except Exception:
                    # Applying a change sets absolute values, so applying these again later is safe: keep them.
                    with self._pending_lock:
                        self._pending = changes if self._pending is None else changes.merge(self._pending)
                    raise
                self._render_seconds = time.perf_counter() - started
            # The contract families, then the prometheus_client collectors (audit, power, process).
            return [*self._rendered, generate_latest(self.registry)]

    async def _ticker(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._dirty.wait(), timeout=self.options.tick)
                await asyncio.sleep(MIN_TICK_SPACING)
            except TimeoutError:
                pass
            self._dirty.clear()
            self._tick()

    def _health(self) -> tuple[bool, str]:
        age = self._clock() - self._last_tick
        if age > 3 * self.options.tick + 5:
            return False, f"stalled: last tick {age:.0f}s ago"
        return True, "ok"

    # -- reload -------------------------------------------------------------------------------------

    def _signal_reload(self) -> None:
        assert self._loop is not None
        self._loop.create_task(self.reload())

    def _http_reload(self, body: bytes, headers: object) -> tuple[int, bytes]:
        assert self._loop is not None
        ok, message = asyncio.run_coroutine_threadsafe(self.reload(), self._loop).result(timeout=60)
        return (200 if ok else 500), (message + "\n").encode()

    async def reload(self) -> tuple[bool, str]:
        """Load the inventory again; a bad one is refused and the running one stays."""
        assert self._loop is not None
        try:
            # Parsing a large inventory takes seconds: keep the probe loop running meanwhile.
            inventory = await self._loop.run_in_executor(None, self._load_inventory)
            exclusions = await self._loop.run_in_executor(None, self._load_exclusions, inventory)
        except ConfigError as err:
            self._reload_ok = False
            log.error("reload refused, keeping the running inventory: %s", err)
            self._tick()
            return False, f"reload refused, keeping the running inventory: {err}"
        if inventory.exporter != self.inventory.exporter:
            log.warning("exporter: settings (listen, state_dir, ...) take effect only at restart")
        self.pinger.open(ip_versions(inventory))
        previous, self.inventory = self.inventory, inventory
        self.exclusions = exclusions
        self.audit.set_inventory(inventory)
        now = self._clock()
        self.engine.configure(specs_from_inventory(inventory), now)
        self._probe_layout = self._configure_probes(inventory)
        if (inventory.devices, inventory.auths, [c.power for c in inventory.customers]) != (
                previous.devices, previous.auths, [c.power for c in previous.customers]):
            await self._stop_power()
            self._start_power(inventory)
        self._reload_ok = True
        self._reload_at = now
        self._tick()
        await self._loop.run_in_executor(None, self._exposition)
        _settle_heap()
        message = (f"reloaded {self.options.config}: {len(inventory.customers)} customers, "
                   f"{len(self.engine.keys)} targets")
        log.info(message)
        return True, message
