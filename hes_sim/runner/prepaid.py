"""The scenario's prepaid events: consumers switched from postpaid, and recharge rushes."""

from __future__ import annotations

import random
from collections import Counter

import structlog

from hes_sim.clock import SimClock
from hes_sim.errors import ScenarioError
from hes_sim.hes.prepaid.account import AccountState
from hes_sim.hes.prepaid.engine import PrepaidEngine
from hes_sim.runner.commands import seeded_share
from hes_sim.scenario.model import PrepaidSpec, PrepaidSwitch, RechargeRush
from hes_sim.scenario.report import Percentiles, PrepaidReport

log = structlog.get_logger(__name__)


def switch_targets(switch: PrepaidSwitch, consumers: list[str], seed: int, index: int) -> list[str]:
    """The consumers a switch moves to prepaid: listed, or a seeded share."""
    if switch.meters is not None:
        unknown = sorted(set(switch.meters) - set(consumers))
        if unknown:
            raise ScenarioError(f"prepaid.switches.{index}.meters: not consumers: {unknown[:5]}")
        return list(switch.meters)
    assert switch.share is not None  # noqa: S101 - the model checks one of the two
    return seeded_share(consumers, switch.share, seed ^ (0x5A17 + index))


async def drive_prepaid(
    spec: PrepaidSpec,
    consumers: list[str],
    engine: PrepaidEngine,
    *,
    clock: SimClock,
    start: float,
    seed: int,
) -> None:
    """Apply the switches and recharge rushes at their simulated times, in order."""
    steps: list[tuple[float, int, PrepaidSwitch | RechargeRush]] = [
        (switch.at, index, switch) for index, switch in enumerate(spec.switches)
    ] + [(rush.at, index, rush) for index, rush in enumerate(spec.recharges)]
    targets = {
        index: switch_targets(switch, consumers, seed, index)
        for index, switch in enumerate(spec.switches)
    }
    for at, index, step in sorted(steps, key=lambda s: s[0]):
        await clock.sleep_until(start + at)
        if isinstance(step, PrepaidSwitch):
            grace = spec.policy.switch_grace_period if step.grace is None else step.grace
            switched = engine.switch_to_prepaid(targets[index], step.opening_balance, grace)
            log.info(
                "prepaid_switch", consumers=switched, opening_balance=str(step.opening_balance)
            )
        else:
            await _rush(step, index, engine, clock, seed)


async def _rush(
    rush: RechargeRush, index: int, engine: PrepaidEngine, clock: SimClock, seed: int
) -> None:
    """Those disconnected now recharge, each at a seeded moment inside the spread."""
    dark = sorted(
        meter_id
        for meter_id, account in engine.accounts.items()
        if account.state is AccountState.DISCONNECTED
    )
    rng = random.Random(seed ^ (0x4EC4 + index))
    chosen = sorted(rng.sample(dark, round(rush.share * len(dark)))) if dark else []
    now = clock.now()
    moments = sorted((now + rng.uniform(0, rush.spread), meter_id) for meter_id in chosen)
    log.info("recharge_rush", consumers=len(chosen), spread_s=rush.spread)
    for when, meter_id in moments:
        await clock.sleep_until(when)
        await engine.recharge(meter_id, rush.amount, f"rush-{index}-{meter_id}")


def prepaid_figures(engine: PrepaidEngine) -> PrepaidReport:
    figures = engine.figures
    states = Counter(account.state.value for account in engine.accounts.values())
    return PrepaidReport(
        accounts_prepaid=sum(n for state, n in states.items() if state != "postpaid"),
        accounts_by_state=dict(states),
        disconnections=figures.disconnections,
        recharges=figures.recharges,
        recharge_to_light_seconds=Percentiles.of(figures.recharge_to_light),
        still_dark_after_recharge=states.get(AccountState.RECONNECT_PENDING.value, 0),
        low_balance_alerts=dict(figures.alerts),
    )
