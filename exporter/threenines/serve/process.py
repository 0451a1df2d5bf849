"""`threenines serve`: wires inventory → probers → contract engine → ledger → published changes → HTTP.

One asyncio loop runs probes, the tick (time accrual, ledger heartbeat) and reloads. Each tick publishes what
changed as immutable views; a scrape renders them (only the lines that changed since the previous scrape)
in its HTTP thread, under a lock, and never touches the loop's objects. Nothing renders while nobody scrapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from threenines.alerting.deadlines import DeadlineWatch
from threenines.alerting.webhook import AuditWebhook
from threenines.clock import AnchoredClock
from threenines.config.configfile import ConfigError
from threenines.config.exclusions import Exclusions, load_exclusions
from threenines.config.inventory import Inventory, Port, TargetKey
from threenines.config.inventory_load import load_inventory
from threenines.config.sharding import shard_inventory
from threenines.config.webconfig import load_web_config
from threenines.contract.engine import ContractEngine, TargetSpec, specs_from_inventory
from threenines.contract.machine import OutageEvent
from threenines.contract.vantage_health import VantageHealth, canary_ports
from threenines.exposition.applications import ApplicationCollector
from threenines.exposition.catalogue import TICK_ERRORS_TOTAL, metric_family
from threenines.exposition.clock import ClockStepsCollector
from threenines.exposition.contract import ExporterChanges, HealthView, SnapshotRenderer
from threenines.exposition.encoding import Piece, Run, gzip_parts
from threenines.exposition.merge_policy import MergePolicyCollector
from threenines.exposition.vantage_health import VantageHealthCollector
from threenines.ledgers.audit import AuditLedger
from threenines.ledgers.delivery import DeliveryLedger
from threenines.ledgers.outages import OutageLedger
from threenines.ledgers.sqlite import LedgerError
from threenines.notify.availability import MonthOutages
from threenines.notify.channels import channels_for
from threenines.notify.endpoint import CountedEndpoint, DeliveryEndpoint, OutageTimes
from threenines.notify.peer import PEER_PATH, PeerEndpoint, PeerLink
from threenines.notify.worker import Notifier
from threenines.probes.app_poller import ApplicationPoller, applications_of
from threenines.probes.ping import Pinger
from threenines.probes.ping_scheduler import ProbeScheduler, phase
from threenines.probes.power_trap import TRAP_PATH, trap_route
from threenines.serve.httpserver import ExporterHTTPServer

if TYPE_CHECKING:
    from threenines.contract.power_state import PowerPair
    from threenines.exposition.power import PowerCollector

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
    vantage: str | None = None  # a replica exporter's name (overrides exporter.vantage; read at start only)
    peer: str | None = None  # the other replica's base URL: one of the two delivers each notice (notify.peer)


def ports_of(inventory: Inventory) -> dict[TargetKey, Port]:
    return {TargetKey(c.id, "connectivity", p.id): p for c, p in inventory.ports()}


def ip_versions(inventory: Inventory) -> tuple[int, ...]:
    """The ICMP socket families the inventory's ports need (IPv4 at least, so a first port can be added)."""
    return tuple(sorted({p.family for _, p in inventory.ports()} | {c.family for _, c in inventory.canaries()} | {4}))


def _settle_heap() -> None:
    """Exempt the long-lived state (machines, stats, rendered lines) from the cyclic garbage collector.

    At 50k ports that state is millions of objects, and every full collection walked all of them: it cost more
    CPU than probing did. What a reload replaced is collected once here, then the rest is frozen again.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def split_listen(listen: str) -> tuple[str, int]:
    """exporter.listen or --listen → (host, port): HOST:PORT, [IPv6]:PORT, or HOST / [IPv6] on port 9839;
    ":PORT" is 127.0.0.1. A value that is none of these is a ConfigError naming --listen (the inventory's own
    value was already checked where it is written)."""
    from threenines.config.inventory_load import parse_listen

    value = listen.strip()
    try:
        return parse_listen("127.0.0.1" + value if value.startswith(":") else value, port_zero=True)
    except ValueError as err:
        raise ConfigError("--listen", 0, "", str(err)) from None


class LoopFaults(Collector):
    """Exceptions the loop caught instead of dying: `threenines_tick_errors_total{stage}`.

    A tick has stages that fail alone: `contract` (time accrual, unions, heartbeat), `exclusions` (which
    exclusion windows are active) and `publish` (the views for the next scrape); `loop` is an exception in any
    other callback of the event loop (asyncio would only log it). Each distinct fault (stage, exception type,
    the line that raised) is logged once with its traceback and then only counted, so a fault that repeats
    every tick cannot flood the log; when its stage succeeds again that is logged, and a recurrence is logged
    anew.
    """

    STAGES = ("contract", "exclusions", "publish", "loop")
    _MAX_DISTINCT = 64  # distinct faults remembered per stage; beyond, each is logged (they are not repeats)

    def __init__(self) -> None:
        self.errors = dict.fromkeys(self.STAGES, 0)
        self._failing: dict[str, set[tuple[str, str, int]]] = {stage: set() for stage in self.STAGES}

    @contextlib.contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        """Run a stage: an exception is logged (once), counted and swallowed; success ends a failing streak."""
        try:
            yield
        except Exception as err:
            self.failed(stage, err)
        else:
            if self._failing[stage]:
                log.warning("tick stage %s works again (%d errors so far)", stage, self.errors[stage])
                self._failing[stage].clear()

    def failed(self, stage: str, err: BaseException, what: str = "") -> None:
        self.errors[stage] += 1
        frames = traceback.extract_tb(err.__traceback__)
        where = (frames[-1].filename, frames[-1].lineno or 0) if frames else ("", 0)
        key = (type(err).__name__, *where)
        failing = self._failing[stage]
        if key in failing:
            return
        if len(failing) < self._MAX_DISTINCT:
            failing.add(key)
        log.error("tick stage %s failed%s, the loop goes on (threenines_tick_errors_total counts each; "
                  "logged once until the stage works again): %s: %s",
                  stage, f" ({what})" if what else "", type(err).__name__, err, exc_info=err)

    def collect(self) -> Iterator[Any]:
        family = metric_family(TICK_ERRORS_TOTAL)
        for stage, count in list(self.errors.items()):
            family.add_metric([stage], count)
        yield family


class Exporter:
    def __init__(self, options: ServeOptions, clock: AnchoredClock | None = None) -> None:
        self.options = options
        # One clock for every stamp — probes, the contract, the ledgers, the audit webhook's dispatches — so a
        # notification's delay and an outage's length are elapsed time (clock.py, docs/design.md "Clock steps").
        self._clock = clock = clock if clock is not None else AnchoredClock()
        self.inventory = self._load_inventory()  # ConfigError propagates: fail fast at start
        self.exclusions = self._load_exclusions(self.inventory)
        state_dir = options.state_dir or Path(self.inventory.exporter.state_dir)
        self._power_history = state_dir / "power-history.json"  # the blackout rule's memory across restarts
        # Both ledgers before anything runs: a corrupt one, or one the exporter cannot write, refuses the start
        # (LedgerError names the file and the fix); a full disk does not (docs/design.md, "Faults").
        self.ledger = OutageLedger(state_dir / "outages.sqlite")
        try:
            audit_ledger = AuditLedger(state_dir / "audit.sqlite")
            delivery_ledger = DeliveryLedger(state_dir / "delivery.sqlite")
        except LedgerError:
            self.ledger.close()
            raise
        # An outage event is published promptly: alerts fire at the first evaluation after determination.
        self.engine = ContractEngine(self.ledger, on_event=self._outage_event)
        self.engine.configure(specs_from_inventory(self.inventory), clock())
        # Probe results pass the vantage's health on their way to the engine: while a site's canaries all fail,
        # its customers' failures are no evidence (contract/vantage_health.py, docs/ha.md "Vantage health").
        # Answers go down as the engine's tokens (its machines), resolved once a port: no key hashed per probe.
        self.vantage_health = VantageHealth(self.engine.observe, self.engine.observe_answers, self.engine.resolve,
                                            self.engine.observe_tokens)
        self.scheduler = ProbeScheduler(lambda done: Pinger(done, privileged=options.privileged),
                                        self.vantage_health.observe, self.inventory.exporter.max_concurrent_probes,
                                        clock, self.vantage_health.observe_tokens, self.vantage_health.resolve)
        self.pinger = self.scheduler.pinger
        self._probe_layout: tuple[TargetKey, ...] | None = self._configure_probes(self.inventory)
        self.registry = CollectorRegistry(auto_describe=False)
        self._renderer = SnapshotRenderer(options.vantage or self.inventory.exporter.vantage)
        ProcessCollector(registry=self.registry)
        self.registry.register(VantageHealthCollector(self.vantage_health.snapshot,
                                                      options.vantage or self.inventory.exporter.vantage))
        # The rules apply the policy the report bills by (docs/ha.md "Merged views"); a reload swaps self.exclusions.
        self.registry.register(MergePolicyCollector(lambda: self.exclusions,
                                                    options.vantage or self.inventory.exporter.vantage))
        self.faults = LoopFaults()
        self.registry.register(self.faults)
        self.registry.register(ClockStepsCollector(clock))
        self._exclusion_states: tuple[tuple[str, str, str, bool], ...] = ()
        self._pending: ExporterChanges | None = None  # published by the loop, taken by the next render
        self._pending_lock = threading.Lock()
        self._render_lock = threading.RLock()  # _exposition_gzip holds it around _pieces
        self._rendered: list[Run] = []
        self._render_seconds = 0.0
        self._reload_ok = True
        self._reload_at = clock()
        self._last_tick = 0.0
        self._stop = asyncio.Event()
        self._dirty = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._power: tuple[PowerPair, asyncio.Task[None], asyncio.Event, PowerCollector] | None = None
        self._applications: tuple[ApplicationPoller, asyncio.Task[None], asyncio.Event] | None = None
        host, port = split_listen(options.listen or self.inventory.exporter.listen)
        web = load_web_config(options.web_config) if options.web_config else None
        self.http = ExporterHTTPServer(host, port, self._exposition, self._health,
                                       max_post_bytes=MAX_AUDIT_BODY_BYTES, web=web,
                                       gzip_metrics=self._exposition_gzip)
        self.http.add_post("/-/reload", self._http_reload)
        self.http.add_post(TRAP_PATH, trap_route(lambda: self._power[0].poller if self._power else None,
                                                  lambda: self._loop))
        token_ref = self.inventory.exporter.audit_token
        token = token_ref.resolve() if token_ref is not None else None  # SecretError: fail at start
        if token is None:
            log.warning("exporter.audit_token is not set: the audit webhook accepts unauthenticated posts")
        self.audit = AuditWebhook(audit_ledger, token, MAX_AUDIT_BODY_BYTES,
                                  self.inventory, clock, on_record=self._audit_recorded)
        self.registry.register(self.audit.collector)
        # The exporter delivers the customers' notifications (threenines.notify, docs/alerting.md).
        vantage = options.vantage or self.inventory.exporter.vantage
        if options.peer and not vantage:
            raise ConfigError("--peer", 0, "", "a replica with a peer needs its own name: add --vantage NAME")
        peer = PeerLink(options.peer, vantage, lambda: token) if options.peer else None
        self.notifier = Notifier(delivery_ledger, channels_for(self.inventory.notification), self.inventory, clock,
                                 peer=peer)
        self.registry.register(self.notifier.collector)
        self.outage_times = OutageTimes()
        self.outage_times.rebuild(self.ledger.outages(since=clock() - OutageTimes.KEEP))
        # The month's availability so far in each customer message, from the same outages (notify.availability).
        self.month_outages = MonthOutages()
        self.month_outages.rebuild(self.ledger.outages(since=clock() - MonthOutages.KEEP), self.ledger.outage_gaps())
        self.delivery = DeliveryEndpoint(self.audit, self.notifier, self.inventory, clock, self.outage_times,
                                         self.month_outages)
        self.http.add_post("/alertmanager/webhook", CountedEndpoint("audit", self.audit.handle, self.notifier.state),
                           own_auth=True)
        self.http.add_post("/alertmanager/deliver", CountedEndpoint("deliver", self.delivery.handle,
                                                                    self.notifier.state), own_auth=True)
        if peer is not None:
            # The peer's questions about notices, and its determinations for the deadline watch (created below,
            # before the server starts).
            self.http.add_post(PEER_PATH, PeerEndpoint(vantage, self.notifier.peer_claim, lambda: token,
                                                       lambda runs: self.deadlines.peer_runs(runs)).handle,
                               own_auth=True)
        # Each determination's notification deadline is decided when it passes (deadlines.py); outages whose
        # deadline passed while the exporter was not running are decided now. Replicas count it from the earliest
        # determination of the outage they know: the page's, or the peer's (told through the notifier).
        self.deadlines = DeadlineWatch(self.audit, self._notification_deadline, self.notifier.delivered_at,
                                       notices=self.notifier.determinations,
                                       share=self.notifier.share_runs if peer is not None else None)
        self.deadlines.rebuild(self.ledger, clock())

    def _outage_event(self, event: OutageEvent) -> None:
        deadlines = getattr(self, "deadlines", None)  # events during the first configure precede the watch
        if deadlines is not None:
            deadlines.observe(event)
        outage_times = getattr(self, "outage_times", None)
        if outage_times is not None:
            outage_times.observe(event)
        month_outages = getattr(self, "month_outages", None)
        if month_outages is not None:
            month_outages.observe(event)
        self._dirty.set()

    def _notification_deadline(self, customer_id: str) -> float | None:
        customer = next((c for c in self.inventory.customers if c.id == customer_id), None)
        return customer.notification_deadline if customer is not None else None

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.set_exception_handler(self._loop_fault)
        self.pinger.open(ip_versions(self.inventory))
        self._start_power(self._power_poller(self.inventory))
        self._start_applications(self.inventory)
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
                 asyncio.create_task(self._ticker(), name="tick"),
                 asyncio.create_task(self.notifier.run(self._stop), name="notify")]
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._stop_power()
            await self._stop_applications()
            self._tick()
            self.http.stop()
            self.pinger.close()
            self.ledger.close()
            self.audit.ledger.close()
            self.notifier.ledger.close()
            log.info("stopped")

    def stop(self) -> None:
        self._stop.set()

    # -- evidence, time and rendering ---------------------------------------------------------------

    def _load_inventory(self) -> Inventory:
        return shard_inventory(load_inventory(self.options.config), *self.options.shard)

    # -- exclusions ----------------------------------------------------------------------------------

    def _load_exclusions(self, inventory: Inventory) -> Exclusions | None:
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

    def _power_poller(self, inventory: Inventory) -> PowerPair | None:
        """A poller for the inventory's UPSes and PDUs and the evaluator of its customers' power (not started);
        pysnmp is imported only for devices."""
        if not inventory.devices:
            return None
        from threenines.contract.power_state import power_pair

        return power_pair(inventory, self.engine.observe, self._clock, history=self._power_history)

    def _start_power(self, power: PowerPair | None) -> None:
        if power is None:
            return
        from threenines.exposition.power import PowerCollector

        stop = asyncio.Event()
        task = asyncio.create_task(power.poller.run(stop), name="power")
        collector = PowerCollector(power.poller.snapshot, power.evaluator.snapshot)
        self.registry.register(collector)
        self._power = (power, task, stop, collector)

    async def _stop_power(self) -> None:
        if self._power is None:
            return
        _, task, stop, collector = self._power
        self._power = None
        stop.set()
        try:
            await asyncio.wait_for(task, timeout=10)
        except TimeoutError:
            task.cancel()
        self.registry.unregister(collector)

    # -- application checks ----------------------------------------------------------------------------

    def _start_applications(self, inventory: Inventory) -> None:
        """The customers' application checks on their own schedule (application_poller.py), beside the pings."""
        if not applications_of(inventory):
            return
        poller = ApplicationPoller(inventory, self.vantage_health.observe, self._clock,
                                   min(256, inventory.exporter.max_concurrent_probes))
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop), name="applications")
        collector = ApplicationCollector(poller.statuses)
        self.registry.register(collector)
        self._applications = (poller, task, stop)
        self._application_collector = collector

    async def _stop_applications(self) -> None:
        if self._applications is None:
            return
        _, task, stop = self._applications
        self._applications = None
        stop.set()
        try:
            await asyncio.wait_for(task, timeout=10)
        except TimeoutError:
            task.cancel()
        self.registry.unregister(self._application_collector)

    def _audit_recorded(self) -> None:
        # Called from an HTTP thread: ask the loop to re-render so the delay metrics show promptly.
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._dirty.set)

    def _configure_probes(self, inventory: Inventory) -> tuple[TargetKey, ...]:
        ports = ports_of(inventory)
        self.vantage_health.configure(inventory)
        # The port families list the ports in the order they are probed: the ports probed between two scrapes
        # are then neighbours, in a few pieces of the exposition, and only those pieces are joined and
        # compressed again (exposition/contract.py). With exporter.probe_metrics: false they have no series.
        layout = (tuple(sorted(ports, key=lambda key: phase(key, 1.0)))  # the phase as a fraction of any interval
                  if inventory.exporter.probe_metrics else ())
        # Canaries are scheduled like ports; the layout (what the port families render) has the ports only.
        self.scheduler.configure({**ports, **canary_ports(inventory)}, layout)
        return layout

    def _tick(self) -> None:
        """Advance time and publish; each stage that raises is logged and counted, and the others still run.

        /healthz counts a tick only when accounting and publishing both succeeded, so a contract that stopped
        advancing shows as stalled; failing exclusions keep the states last computed.
        """
        now = self._clock()
        advanced = False
        with self.faults.stage("contract"):
            now = self._follow_clock(now)
            self.engine.tick(now)
            self.deadlines.check(now)
            advanced = True
        with self.faults.stage("exclusions"):
            self._exclusion_states = self._active_exclusions(now)
        with self.faults.stage("publish"):
            self._publish(now)
            if advanced:
                self._last_tick = now

    def _follow_clock(self, now: float) -> float:
        """Detect a step of the system clock; move the stamps onto it once no notification deadline is pending.

        A notification's delay is its dispatch's stamp minus its determination's, and its deadline is decided on
        the stamps too: moved while one is pending, a step would be in that difference (a false late dispatch or
        miss, or a delivery refused as determined in the future). Until then the stamps go on from the old
        anchor, on the monotonic clock; if the system clock comes back meanwhile, nothing moves at all. Returns
        `now` in the stamps the tick goes on with.
        """
        clock = self._clock
        step = clock.check()
        if step is not None:
            log.warning("system clock stepped by %+.3f s: durations stay monotonic; it is %+.3f s from the stamps "
                        "until they are moved onto it", step, clock.unapplied)
        if not clock.unapplied:
            return now
        if self.deadlines.pending:
            if step is not None:
                log.warning("the stamps move once no notification deadline is pending (%d now)",
                            self.deadlines.pending)
            return now
        shift = clock.deviation()
        self.engine.rebase(shift, now)
        clock.reanchor(shift)
        self._last_tick += shift
        log.warning("stamps moved by %+.3f s onto the system clock (open outages keep their start stamps)", shift)
        return now + shift

    def _publish(self, now: float) -> None:
        scheduler = self.scheduler
        lag = scheduler.lag
        changes = ExporterChanges(
            contract=self.engine.changes(now),
            probes=scheduler.changed_records(),
            probe_layout=self._probe_layout,
            customers=self.inventory.customers,
            health=HealthView(
                reload_successful=self._reload_ok,
                reload_success_at=self._reload_at,
                lag_counts=tuple(lag.counts),
                lag_sum=lag.total,
                in_flight=scheduler.in_flight,
                ledger_writes=(("outage", self.ledger.writes_ok, self.ledger.writes_failed),
                               ("audit", self.audit.ledger.writes_ok, self.audit.ledger.writes_failed),
                               ("delivery", self.notifier.ledger.writes_ok, self.notifier.ledger.writes_failed)),
                ledger_recovery_writes=tuple(("outage", kind, ok, failed)
                                             for kind, (ok, failed) in self.ledger.recovery_writes.items()),
                ledger_pending=tuple(("outage", kind, count) for kind, count in self.ledger.pending().items()),
                render_seconds=self._render_seconds,
                wire=self.pinger.wire_kind,
                unmatched_replies=self.pinger.replies_unmatched,
            ),
            exclusions=self._exclusion_states,
        )
        self._probe_layout = None
        with self._pending_lock:
            self._pending = changes if self._pending is None else self._pending.merge(changes)

    def _loop_fault(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio's handler for exceptions no task or caller took (a timer callback's, a dropped task's)."""
        err = context.get("exception")
        if err is None:
            loop.default_exception_handler(context)
            return
        self.faults.failed("loop", err, context.get("message", ""))

    def _exposition(self) -> list[bytes]:
        """/metrics: apply what the loop published since the last scrape, render, add the small collectors."""
        return [piece.raw for run in self._pieces() for piece in run.pieces]

    def _exposition_gzip(self) -> list[bytes]:
        """/metrics for a client that accepts gzip (Prometheus asks for it): the same pieces in one gzip member,
        each piece compressed once for as long as its lines stay (exposition/encoding.py)."""
        with self._render_lock:  # a piece's segment is made under the lock, once
            return gzip_parts(self._pieces())

    def _pieces(self) -> list[Run]:
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
            return [*self._rendered, Run((Piece(generate_latest(self.registry)),))]

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
        """Load the inventory and the exclusions again: all of it or none.

        Everything that can fail (parsing, time zones, the ICMP socket a new address family needs, the power
        poller, the ledger rows of new targets) is done before anything running changes; then the new inventory
        is applied in memory. Any exception refuses the reload: the running inventory and exclusions stay,
        entirely, threenines_config_last_reload_successful is 0 and the log and the reply say why.
        """
        assert self._loop is not None
        async with self._reload_lock:  # a SIGHUP and a POST at once must not interleave
            try:
                loaded = await self._prepare_reload()
            except Exception as err:
                return self._refuse(err, "reload refused, keeping the running inventory")
            previous = _Loaded(self.inventory, self.exclusions, specs_from_inventory(self.inventory))
            now = self._clock()
            try:
                await self._apply(loaded, now)
            except Exception as err:
                # Only a bug gets here (what can fail was done above): put the previous inventory back, whole.
                try:
                    await self._apply(previous, now)
                    if self._power is None:
                        self._start_power(self._power_poller(previous.inventory))
                except Exception:
                    log.critical("restoring the previous inventory failed too: restart the exporter", exc_info=True)
                return self._refuse(err, "reload failed while applying it, the previous inventory runs again")
            self._reload_ok = True
            self._reload_at = now
            self._tick()
            await self._loop.run_in_executor(None, self._exposition)
            _settle_heap()
            message = (f"reloaded {self.options.config}: {len(loaded.inventory.customers)} customers, "
                       f"{len(self.engine.keys)} targets")
            log.info(message)
            return True, message

    async def _prepare_reload(self) -> _Loaded:
        assert self._loop is not None
        # Parsing a large inventory takes seconds: keep the probe loop running meanwhile.
        inventory = await self._loop.run_in_executor(None, self._load_inventory)
        exclusions = await self._loop.run_in_executor(None, self._load_exclusions, inventory)
        specs = specs_from_inventory(inventory)
        power_changed = (inventory.devices, inventory.auths, [c.power for c in inventory.customers]) != (
            self.inventory.devices, self.inventory.auths, [c.power for c in self.inventory.customers])
        poller = self._power_poller(inventory) if power_changed else None
        if inventory.exporter != self.inventory.exporter:
            log.warning("exporter: settings (listen, state_dir, ...) take effect only at restart")
        self.pinger.open(ip_versions(inventory))  # one more family socket leaves the running ports alone
        # The one durable write, last: new targets' rows (the engine finds them known and writes nothing).
        known = self.ledger.known_targets()
        new = [spec.key for spec in specs if spec.key not in known]
        if new:
            self.ledger.add_targets(new, self._clock())
        return _Loaded(inventory, exclusions, specs, power_changed, poller)

    async def _apply(self, loaded: _Loaded, now: float) -> None:
        self._probe_layout = self._configure_probes(loaded.inventory)
        self.engine.configure(loaded.specs, now)
        self.audit.set_inventory(loaded.inventory)
        self.notifier.set_inventory(loaded.inventory, channels_for(loaded.inventory.notification))
        self.delivery.set_inventory(loaded.inventory)
        self.inventory, self.exclusions = loaded.inventory, loaded.exclusions
        if loaded.power_changed:
            await self._stop_power()
            self._start_power(loaded.power)
        running = self._applications[0].checks if self._applications is not None else ()
        if applications_of(loaded.inventory) != running:
            await self._stop_applications()
            self._start_applications(loaded.inventory)

    def _refuse(self, err: Exception, what: str) -> tuple[bool, str]:
        self._reload_ok = False
        # A ConfigError names file, line and field; anything else is unexpected and gets its traceback.
        detail = str(err) if isinstance(err, ConfigError) else f"{type(err).__name__}: {err}"
        log.error("%s: %s", what, detail, exc_info=None if isinstance(err, ConfigError) else err)
        self._tick()
        return False, f"{what}: {detail}"


@dataclass(frozen=True)
class _Loaded:
    """An inventory ready to apply: everything about it that can fail already done."""

    inventory: Inventory
    exclusions: Exclusions | None
    specs: list[TargetSpec]
    power_changed: bool = False
    power: PowerPair | None = None  # the new poller + evaluator when the power configuration changed (None: no devices)
