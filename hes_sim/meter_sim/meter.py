"""A virtual meter's measuring side: registers, relay and block-load entries. Pure.

Block values are whole Wh/VAh/varh computed from the interval alone; the cumulative
registers are the sum of the blocks, so registers, profiles and billing agree exactly.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Protocol

from hes_sim.meter_sim.billing import MeterLedger
from hes_sim.meter_sim.event_logs import EventCode, EventLogs
from hes_sim.meter_sim.load_model import Category, ConsumerProfile, IntervalLoad
from hes_sim.meter_sim.relay import DisconnectControl, Outcome, RelayChange, Trigger
from hes_sim.protocols.block_load import (
    SINGLE_PHASE_BLOCK_LOAD,
    THREE_PHASE_BLOCK_LOAD,
    BlockLoadEntry,
    ProfileLayout,
)

# bits of the event status word (the simulator's assignment, documented in the README)
STATUS_POWER_FAILURE = 0
STATUS_LOAD_SWITCH_DISCONNECTED = 1
PUSH_SALT = 0x5EED_0F_F5E7  # keeps push offsets independent of the load noise
BUFFER_DEPTH = 2880  # block-load entries a meter keeps: 30 days of 15-minute intervals


class MeterKind(StrEnum):
    SINGLE_PHASE = "single_phase"  # whole current, IS 15959 Part 2
    THREE_PHASE = "three_phase"  # whole current, Part 2
    LT_CT = "lt_ct"  # LT current-transformer operated, Part 3
    HT_CT = "ht_ct"  # HT (11 kV) CT/PT operated, Part 3
    DT = "dt"  # distribution-transformer meter: its consumers plus losses
    FEEDER = "feeder"  # 11 kV feeder meter: its DTs and HT consumers plus losses


@dataclass(frozen=True, slots=True)
class KindSpec:
    id_prefix: str
    layout: ProfileLayout
    peak_w: float  # typical peak demand of a consumer on this kind of meter
    category: Category
    supply_voltage: float  # phase to neutral
    category_code: int  # the meter-type code in the name plate (simulator's own codes)


KIND_SPECS = {
    MeterKind.SINGLE_PHASE: KindSpec(
        "SP", SINGLE_PHASE_BLOCK_LOAD, 500.0, Category.DOMESTIC, 232.0, 5
    ),
    MeterKind.THREE_PHASE: KindSpec(
        "TP", THREE_PHASE_BLOCK_LOAD, 2_000.0, Category.DOMESTIC, 232.0, 6
    ),
    MeterKind.LT_CT: KindSpec(
        "LT", THREE_PHASE_BLOCK_LOAD, 15_000.0, Category.COMMERCIAL, 232.0, 7
    ),
    MeterKind.HT_CT: KindSpec(
        "HT", THREE_PHASE_BLOCK_LOAD, 150_000.0, Category.INDUSTRIAL, 6_350.0, 8
    ),
    MeterKind.DT: KindSpec("DT", THREE_PHASE_BLOCK_LOAD, 0.0, Category.DOMESTIC, 240.0, 9),
    MeterKind.FEEDER: KindSpec("FD", THREE_PHASE_BLOCK_LOAD, 0.0, Category.DOMESTIC, 6_350.0, 10),
}
CONSUMER_KINDS = (MeterKind.SINGLE_PHASE, MeterKind.THREE_PHASE, MeterKind.LT_CT, MeterKind.HT_CT)


class LoadSource(Protocol):
    """Where a meter's load comes from: one consumer, or everything below a DT or feeder."""

    @property
    def seed(self) -> int: ...

    def demand(self, interval_end: float, interval_s: float, middle: datetime) -> IntervalLoad: ...


def meter_seed(fleet_seed: int, meter_id: str) -> int:
    """A per-meter seed that depends only on the fleet seed and the meter id."""
    digest = hashlib.blake2b(f"{fleet_seed}:{meter_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(slots=True)
class EnergyRegisters:
    """Cumulative registers in whole Wh / VAh / varh: the sum of every block so far."""

    wh_import: int = 0
    vah_import: int = 0
    varh_q1: int = 0


@dataclass(frozen=True, slots=True)
class BlockEnergy:
    wh_import: int
    vah_import: int
    varh_q1: int
    supplied_s: float  # seconds of the interval with the relay closed


@dataclass(slots=True)
class PushSettings:
    """Push setup (class 40) attributes the head-end may change with SET."""

    randomisation_start_interval: int = 60  # simulated seconds
    number_of_retries: int = 3
    repetition_delay: int = 60


@dataclass(slots=True)
class VirtualMeter:
    meter_id: str
    kind: MeterKind
    source: LoadSource
    tz: timezone
    relay: DisconnectControl = field(default_factory=DisconnectControl)
    registers: EnergyRegisters = field(default_factory=EnergyRegisters)
    # output-state changes, oldest first: (simulated time, relay closed after it)
    supply_changes: list[tuple[float, bool]] = field(default_factory=list)
    # mains changes, oldest first: (simulated time, powered after it); off means no load
    power_changes: list[tuple[float, bool]] = field(default_factory=list)
    events: EventLogs = field(default_factory=EventLogs)
    ledger: MeterLedger = field(default_factory=MeterLedger)
    push: PushSettings = field(default_factory=PushSettings)
    clock_offset_s: float = 0.0  # how far the meter's clock is from simulated true time
    load_limit_w: int = 0  # 0: no limit
    interval_s: int = 900
    first_interval_end: float | None = None  # the oldest entry of the block-load buffer
    last_closed_end: float | None = None  # the newest
    # suite 0: the meter's own counter (pushes and responses) and, per client system
    # title, the last counter accepted from it
    invocation_counter: int = 0
    client_counters: dict[bytes, int] = field(default_factory=dict)
    # the last interval computed: a DT and its feeder ask for it again in the same instant
    _last_block: tuple[tuple[float, float, int], tuple[IntervalLoad, BlockEnergy]] | None = None

    @classmethod
    def create(cls, meter_id: str, kind: MeterKind, fleet_seed: int, tz: timezone) -> VirtualMeter:
        if kind not in CONSUMER_KINDS:
            raise ValueError(f"a {kind} meter measures its children: use VirtualMeter.network")
        seed = meter_seed(fleet_seed, meter_id)
        spec = KIND_SPECS[kind]
        profile = ConsumerProfile.draw(seed, spec.peak_w, spec.category, spec.supply_voltage)
        return cls(meter_id, kind, profile, tz)

    @classmethod
    def network(
        cls,
        meter_id: str,
        kind: MeterKind,
        fleet_seed: int,
        tz: timezone,
        *,
        children: list[VirtualMeter],
        technical_loss: float,
    ) -> VirtualMeter:
        """A DT or feeder meter over ``children``; it has no relay (control mode 0)."""
        if kind not in (MeterKind.DT, MeterKind.FEEDER):
            raise ValueError(f"{kind} is not a network meter")
        source = Aggregate(
            meter_seed(fleet_seed, meter_id),
            children,
            technical_loss,
            KIND_SPECS[kind].supply_voltage,
        )
        return cls(meter_id, kind, source, tz, relay=DisconnectControl(control_mode=0))

    @property
    def layout(self) -> ProfileLayout:
        return KIND_SPECS[self.kind].layout

    def operate_relay(self, trigger: Trigger, at: float) -> tuple[Outcome, RelayChange | None]:
        was_closed = self.relay.output_state
        outcome, change = self.relay.fire(trigger, at)
        if self.relay.output_state != was_closed:
            self.supply_changes.append((at, self.relay.output_state))
            self.events.record(
                EventCode.LOAD_SWITCH_CONNECTED
                if self.relay.output_state
                else EventCode.LOAD_SWITCH_DISCONNECTED,
                at,
            )
        return outcome, change

    @property
    def powered(self) -> bool:
        return not self.power_changes or self.power_changes[-1][1]

    def power_off(self, at: float) -> None:
        """Mains lost: no load from now, and a power-failure event (the last gasp)."""
        if self.powered:
            self.power_changes.append((at, False))
            self.events.record(EventCode.POWER_FAILURE, at)

    def power_on(self, at: float) -> None:
        if not self.powered:
            self.power_changes.append((at, True))
            self.events.record(EventCode.POWER_RESTORED, at)

    def push_offset(self, interval_end: float) -> float:
        """When, after ``interval_end``, this meter pushes: uniform in [0, randomisation
        start interval), drawn from the meter's seed and the interval (push setup, class 40)."""
        window = self.push.randomisation_start_interval
        if window <= 0:
            return 0.0
        return random.Random(self.source.seed ^ int(interval_end) ^ PUSH_SALT).uniform(0, window)

    def status_word(self) -> bytes:
        """The 128-bit event status word (bit 0 first): bit 1 while the relay is open."""
        bits = 0
        if not self.relay.output_state:
            bits |= 1 << (127 - STATUS_LOAD_SWITCH_DISCONNECTED)
        return bits.to_bytes(16, "big")

    def next_invocation_counter(self) -> int:
        self.invocation_counter += 1
        return self.invocation_counter

    def buffered_interval_ends(self) -> list[float]:
        """Interval ends held in the block-load buffer, oldest first."""
        if self.first_interval_end is None or self.last_closed_end is None:
            return []
        first = max(
            self.first_interval_end, self.last_closed_end - (BUFFER_DEPTH - 1) * self.interval_s
        )
        count = int((self.last_closed_end - first) // self.interval_s) + 1
        return [first + k * self.interval_s for k in range(count)]

    def supplied_fraction(self, start: float, end: float) -> float:
        """The share of (start, end] during which the relay was closed and mains was on."""
        if not self.power_changes:
            return _on_share(self.supply_changes, start, end)
        if not self.supply_changes:
            return _on_share(self.power_changes, start, end)
        # both: walk the merged changes (few per interval)
        changes = sorted(
            [(at, "relay", on) for at, on in self.supply_changes]
            + [(at, "power", on) for at, on in self.power_changes]
        )
        state = {"relay": True, "power": True}
        merged: list[tuple[float, bool]] = []
        for at, which, on in changes:
            state[which] = on
            merged.append((at, state["relay"] and state["power"]))
        return _on_share(merged, start, end)

    def block_for(self, interval_end: float, interval_s: float) -> tuple[IntervalLoad, BlockEnergy]:
        """What the meter measures over the interval ending at ``interval_end``: the
        average load (zero while the relay was open) and the block energies."""
        # a consumer's interval depends on its own relay history only, so it can be kept;
        # a DT's also depends on its consumers' relays, so it is summed afresh
        key = (interval_end, interval_s, len(self.supply_changes) + len(self.power_changes))
        cacheable = self.kind in CONSUMER_KINDS
        if cacheable and self._last_block is not None and self._last_block[0] == key:
            return self._last_block[1]
        end = datetime.fromtimestamp(interval_end, tz=self.tz)
        middle = end - timedelta(seconds=interval_s / 2)
        demand = self.source.demand(interval_end, interval_s, middle)
        supplied = self.supplied_fraction(interval_end - interval_s, interval_end)
        load = replace(demand, active_w=demand.active_w * supplied)
        hours = interval_s / 3600
        apparent = load.active_w / load.power_factor
        reactive = math.sqrt(max(0.0, apparent**2 - load.active_w**2))
        energy = BlockEnergy(
            round(load.active_w * hours),
            round(apparent * hours),
            round(reactive * hours),
            interval_s * supplied,
        )
        if cacheable:
            self._last_block = (key, (load, energy))
        return load, energy

    def entry_for(self, interval_end: float, interval_s: float) -> BlockLoadEntry:
        return self._entry(interval_end, *self.block_for(interval_end, interval_s))

    def close_interval(self, interval_end: float, interval_s: float) -> BlockLoadEntry:
        """The interval's entry; its energy is added to the cumulative registers."""
        load, energy = self.block_for(interval_end, interval_s)
        self.interval_s = int(interval_s)
        if self.first_interval_end is None:
            self.first_interval_end = interval_end
        self.last_closed_end = interval_end
        self.registers.wh_import += energy.wh_import
        self.registers.vah_import += energy.vah_import
        self.registers.varh_q1 += energy.varh_q1
        self.ledger.add_block(
            datetime.fromtimestamp(interval_end, tz=self.tz),
            interval_s,
            energy.wh_import,
            energy.vah_import,
            energy.supplied_s,
        )
        return self._entry(interval_end, load, energy)

    def _entry(
        self, interval_end: float, load: IntervalLoad, energy: BlockEnergy
    ) -> BlockLoadEntry:
        values = (
            _single_phase(load, energy)
            if self.kind is MeterKind.SINGLE_PHASE
            else _three_phase(load, energy)
        )
        return BlockLoadEntry(self.layout, datetime.fromtimestamp(interval_end, tz=self.tz), values)


def _on_share(changes: list[tuple[float, bool]], start: float, end: float) -> float:
    """The share of (start, end] spent on, given changes (time, on after it), oldest first;
    on before the first change."""
    on = True
    since = start
    supplied = 0.0
    for at, now_on in changes:
        if at >= end:
            break
        if at > start:
            if on:
                supplied += at - since
            since = at
        on = now_on
    if on:
        supplied += end - max(since, start)
    return supplied / (end - start)


def _single_phase(load: IntervalLoad, energy: BlockEnergy) -> tuple[int, ...]:
    current = load.active_w / (load.voltage_v * load.power_factor)
    return (_deci(load.voltage_v), _centi(current), energy.wh_import, 0, energy.vah_import, 0)


def _three_phase(load: IntervalLoad, energy: BlockEnergy) -> tuple[int, ...]:
    amps = [
        load.active_w * share / (volt * load.power_factor)
        for share, volt in zip(load.phase_shares, load.phase_volts, strict=True)
    ]
    return (
        *(_centi(a) for a in amps),
        *(_deci(v) for v in load.phase_volts),
        energy.wh_import,
        0,
        energy.varh_q1,
        0,
        0,
        0,
        energy.vah_import,
        0,
    )


def _deci(value: float) -> int:
    return max(0, min(0xFFFF, round(value * 10)))


def _centi(value: float) -> int:
    return max(0, min(0xFFFF, round(value * 100)))


@dataclass(slots=True)
class Aggregate:
    """The load of a DT or feeder meter: what its children draw, plus technical losses."""

    seed: int
    children: list[VirtualMeter]
    technical_loss: float
    nominal_voltage: float

    def demand(self, interval_end: float, interval_s: float, middle: datetime) -> IntervalLoad:
        active = apparent = 0.0
        per_phase = [0.0, 0.0, 0.0]
        for child in self.children:
            load, _energy = child.block_for(interval_end, interval_s)
            active += load.active_w
            apparent += load.active_w / load.power_factor
            if child.kind is MeterKind.SINGLE_PHASE:
                per_phase[child.source.seed % 3] += load.active_w
            else:
                for phase, share in enumerate(load.phase_shares):
                    per_phase[phase] += load.active_w * share
        rng = random.Random(self.seed ^ int(interval_end))
        voltage = self.nominal_voltage * rng.gauss(1.0, 0.005)
        total = sum(per_phase) or 1.0
        shares = (per_phase[0] / total, per_phase[1] / total, per_phase[2] / total)
        if not active:
            shares = (1 / 3, 1 / 3, 1 / 3)
        volts = (voltage, voltage * rng.gauss(1.0, 0.004), voltage * rng.gauss(1.0, 0.004))
        factor = 1 + self.technical_loss
        power_factor = active / apparent if apparent else 1.0
        return IntervalLoad(active * factor, power_factor, voltage, shares, volts)
