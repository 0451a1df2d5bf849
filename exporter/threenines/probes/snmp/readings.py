"""Normalised readings: what every profile decodes into, whatever the vendor MIB.

Units are base units (volts, amperes, watts, joules, seconds, ratios in 0-1). None means "not known":
a missing OID, a placeholder such as 65535, or a value the MIB says cannot be right.
"""

from __future__ import annotations

from dataclasses import dataclass

# The output-source vocabulary of the metric contract (docs/metrics.md, `threenines_ups_output_source`).
OUTPUT_SOURCES = ("normal", "battery", "bypass", "none", "other")
BATTERY_STATES = ("normal", "low", "depleted", "fault", "unknown")
# UPS alarms the power model reads (RFC 1628's well-known alarms, NUT's status words), normalised.
ALARMS = ("on_battery", "low_battery", "depleted_battery", "output_off", "shutdown_pending", "shutdown_imminent")

# Failure reasons: a small fixed set, used as the `reason` label of threenines_device_poll_errors_total.
REASONS = (
    "timeout",          # no answer within timeout × (retries + 1), or the device's deadline passed
    "auth",             # SNMPv3 authentication / privacy failure (wrong key, unknown user)
    "protocol",         # an error status or a malformed or non-increasing answer
    "no_such_object",   # a required OID is not implemented by the agent
    "bad_value",        # a value outside the MIB's range or enumeration (garbage)
    "counter_wrap",     # an energy counter went backwards
    "no_profile",       # no profile matches the device (auto-detect failed)
    "config",           # a secret reference could not be resolved
    "stale",            # a NUT server answered, but has no current data from the UPS (DATA-STALE, no driver)
)


@dataclass(frozen=True)
class UpsLine:
    """One input/output line (phase) of a UPS: RFC 1628's upsInputTable/upsOutputTable row, NUT's L1..L3."""

    id: str
    input_voltage_volts: float | None = None
    output_load_ratio: float | None = None
    output_voltage_volts: float | None = None


@dataclass(frozen=True)
class UpsReading:
    output_source: str | None = None
    battery_status: str | None = None
    battery_charge_ratio: float | None = None
    battery_runtime_seconds: float | None = None
    # The runtime at which the UPS itself declares low battery (RFC 1628 upsConfigLowBattTime, NUT
    # battery.runtime.low); None when the device does not say.
    battery_low_runtime_seconds: float | None = None
    lines: tuple[UpsLine, ...] = ()  # per input/output line; a single-line UPS has line "1"
    alarms: tuple[str, ...] = ()     # words of ALARMS present now, sorted

    @property
    def status(self) -> str:
        """NUT's status words: OL (online), OB (on battery), LB (low battery), BYPASS, OFF; '' when unknown."""
        words = {"normal": ["OL"], "battery": ["OB"], "bypass": ["BYPASS"], "none": ["OFF"]}.get(
            self.output_source or "", []
        )
        if self.battery_status in ("low", "depleted") or "low_battery" in self.alarms:
            words.append("LB")
        return " ".join(words)

    def line_values(self, name: str) -> tuple[tuple[str, float], ...]:
        """(line id, value) of one per-line reading, for the lines that have it."""
        return tuple((line.id, value) for line in self.lines if (value := getattr(line, name)) is not None)


@dataclass(frozen=True)
class OutletReading:
    id: str
    name: str | None = None
    on: bool | None = None
    current_amperes: float | None = None
    power_watts: float | None = None
    energy_joules: float | None = None


@dataclass(frozen=True)
class PhaseReading:
    id: str
    name: str | None = None
    current_amperes: float | None = None
    voltage_volts: float | None = None


@dataclass(frozen=True)
class Problem:
    reason: str  # one of REASONS
    field: str   # which normalised field (e.g. "outlets[3].on"), for logs and `threenines poll`


@dataclass(frozen=True)
class DeviceReading:
    profile: str
    kind: str  # ups | pdu
    switched: bool  # the profile reads an outlet on/off state; unswitched outlets are on while the PDU is
    ups: UpsReading | None = None
    outlets: tuple[OutletReading, ...] = ()
    phases: tuple[PhaseReading, ...] = ()
    problems: tuple[Problem, ...] = ()

    def outlet(self, ident: str) -> OutletReading | None:
        """An outlet by id (table index) or, failing that, by its configured name."""
        for outlet in self.outlets:
            if outlet.id == ident:
                return outlet
        return next((o for o in self.outlets if o.name == ident), None)
