"""`threenines serve`: wires inventory → probers → contract engine → ledger → snapshot → HTTP.

One asyncio loop runs probes, the tick (time accrual, ledger heartbeat) and reloads; rendering /metrics runs
in a worker thread from an immutable snapshot; the HTTP server threads only hand out the rendered bytes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector

from threenines.audit import AuditLedger, AuditWebhook
from threenines.collector import ExporterSnapshot, HealthView, SnapshotRenderer
from threenines.configfile import ConfigError
from threenines.contract import TargetKey
from threenines.engine import ContractEngine, specs_from_inventory
from threenines.httpserver import ExporterHTTPServer
from threenines.inventory import Inventory, Port, load_inventory
from threenines.ledger import Ledger
from threenines.probes.ping import Pinger
from threenines.report.exclusions import Ledger as ExclusionLedger
from threenines.report.exclusions import load_ledger as load_exclusions
from threenines.scheduler import LAG_BUCKETS, ProbeScheduler
from threenines.sharding import shard_inventory
from threenines.webconfig import load_web_config

log = logging.getLogger(__name__)

# Render promptly after an outage event (alerts fire at the first evaluation after determination), but
# never more often than this: rendering a large fleet costs CPU the probes need.
MIN_RENDER_SPACING = 1.0
# Ticks are at least this many render times apart (render <= ~10% of wall time).
RENDER_SHARE_LIMIT = 10
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
        # An outage event re-renders promptly: alerts fire at the first evaluation after determination.
        self.engine = ContractEngine(self.ledger, on_event=lambda event: self._dirty.set())
        self.engine.configure(specs_from_inventory(self.inventory), clock())
        self.pinger = Pinger(privileged=options.privileged)
        self.scheduler: ProbeScheduler | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self._renderer_state = SnapshotRenderer()
        ProcessCollector(registry=self.registry)
        self._snapshot: ExporterSnapshot | None = None
        self._rendered = b""
        self._render_seconds = 0.0
        self._reload_ok = True
        self._reload_at = clock()
        self._last_tick = 0.0
        self._stop = asyncio.Event()
        self._dirty = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._renderer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
        self._power: tuple[object, asyncio.Task[None], asyncio.Event] | None = None
        host, port = split_listen(options.listen or self.inventory.exporter.listen)
        web = load_web_config(options.web_config) if options.web_config else None
        self.http = ExporterHTTPServer(host, port, lambda: self._rendered, self._health,
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

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.pinger.open(ip_versions(self.inventory))
        self.scheduler = ProbeScheduler(self.pinger, self.engine.observe, self.inventory.exporter.max_concurrent_probes,
                                        self._clock)
        self.scheduler.configure(ports_of(self.inventory))
        self._start_power(self.inventory)
        self._tick()
        await self._render()
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
            self._renderer.shutdown(wait=False)
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

    def _tick(self) -> None:
        now = self._clock()
        self.engine.tick(now)
        self._last_tick = now
        scheduler = self.scheduler
        lag = scheduler.lag if scheduler else None
        self._snapshot = ExporterSnapshot(
            contract=self.engine.snapshot(now),
            probes=scheduler.snapshot() if scheduler else (),
            customers=self.inventory.customers,
            health=HealthView(
                reload_successful=self._reload_ok,
                reload_success_at=self._reload_at,
                lag_counts=tuple(lag.counts) if lag else (0,) * (len(LAG_BUCKETS) + 1),
                lag_sum=lag.total if lag else 0.0,
                in_flight=scheduler.in_flight if scheduler else 0,
                ledger_writes=(("outage", self.ledger.writes_ok, self.ledger.writes_failed),
                               ("audit", self.audit.ledger.writes_ok, self.audit.ledger.writes_failed)),
                render_seconds=self._render_seconds,
            ),
            exclusions=self._active_exclusions(now),
        )

    async def _render(self) -> None:
        assert self._loop is not None
        started = time.perf_counter()
        snapshot = self._snapshot
        assert snapshot is not None
        self._rendered = await self._loop.run_in_executor(self._renderer, self._render_bytes, snapshot)
        self._render_seconds = time.perf_counter() - started

    def _render_bytes(self, snapshot: ExporterSnapshot) -> bytes:
        # The contract families, then the prometheus_client collectors (audit, power, process).
        return self._renderer_state.render(snapshot).encode() + generate_latest(self.registry)

    async def _ticker(self) -> None:
        while not self._stop.is_set():
            # A large fleet's render costs seconds: space ticks so rendering stays a small share of a core.
            tick = max(self.options.tick, RENDER_SHARE_LIMIT * self._render_seconds)
            try:
                await asyncio.wait_for(self._dirty.wait(), timeout=tick)
                await asyncio.sleep(max(MIN_RENDER_SPACING, 2 * self._render_seconds))
            except TimeoutError:
                pass
            self._dirty.clear()
            self._tick()
            await self._render()

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
            await self._render()
            return False, f"reload refused, keeping the running inventory: {err}"
        if inventory.exporter != self.inventory.exporter:
            log.warning("exporter: settings (listen, state_dir, ...) take effect only at restart")
        self.pinger.open(ip_versions(inventory))
        previous, self.inventory = self.inventory, inventory
        self.exclusions = exclusions
        self.audit.set_inventory(inventory)
        now = self._clock()
        self.engine.configure(specs_from_inventory(inventory), now)
        assert self.scheduler is not None
        self.scheduler.configure(ports_of(inventory))
        if (inventory.devices, inventory.auths, [c.power for c in inventory.customers]) != (
                previous.devices, previous.auths, [c.power for c in previous.customers]):
            await self._stop_power()
            self._start_power(inventory)
        self._reload_ok = True
        self._reload_at = now
        self._tick()
        await self._render()
        message = (f"reloaded {self.options.config}: {len(inventory.customers)} customers, "
                   f"{len(self.engine.keys)} targets")
        log.info(message)
        return True, message
