"""Meters camp on a downed cell until it is back; a stopping fleet's campers leave cleanly."""

from __future__ import annotations

import asyncio
import random
import time
from typing import cast

from hes_sim.clock import SimClock
from hes_sim.meter_sim.network.gate import CellServiceGate
from hes_sim.meter_sim.network.radio import RadioNetwork


class TwoCells:
    """Meters "A…" in cell A, the others in cell B; no coverage holes."""

    def cell_of(self, meter_id: str) -> str:
        return "A" if meter_id.startswith("A") else "B"

    def in_service(self, _meter_id: str, _now: float) -> bool:
        return True


def gate() -> CellServiceGate:
    clock = SimClock(0.0, 60.0, wall_anchor=time.time())
    return CellServiceGate(cast(RadioNetwork, TwoCells()), clock, ["A", "B"])


async def test_meters_of_a_downed_cell_wait_until_it_is_up_and_others_do_not():
    cells = gate()
    cells.cell_down("A")
    assert not cells.has_service("A1")
    assert cells.has_service("B1")
    camping = [asyncio.create_task(cells.in_service(f"A{n}")) for n in range(50)]
    await asyncio.wait_for(cells.in_service("B1"), 1)  # its cell is up: at once
    await asyncio.sleep(0)
    assert not any(task.done() for task in camping)
    cells.cell_up("A")
    await asyncio.wait_for(asyncio.gather(*camping), 1)
    assert cells.has_service("A1")


async def test_campers_cancelled_in_any_order_leave_nothing_and_the_rest_still_wake():
    cells = gate()
    cells.cell_down("A")
    camping = [asyncio.create_task(cells.in_service(f"A{n}")) for n in range(2_000)]
    await asyncio.sleep(0)
    random.Random(7).shuffle(order := list(camping))
    for task in order[:1_500]:
        task.cancel()
    await asyncio.gather(*order[:1_500], return_exceptions=True)
    assert len(cells._campers["A"] or ()) == 500  # only the ones still camping
    cells.cell_up("A")
    await asyncio.wait_for(asyncio.gather(*order[1_500:]), 1)
    assert cells._campers["A"] is None


async def test_a_cell_down_again_before_its_campers_run_keeps_them_camping():
    cells = gate()
    cells.cell_down("A")
    camper = asyncio.create_task(cells.in_service("A1"))
    await asyncio.sleep(0)
    cells.cell_up("A")
    cells.cell_down("A")  # down again before the camper has run
    await asyncio.sleep(0.01)
    assert not camper.done()
    cells.cell_up("A")
    await asyncio.wait_for(camper, 1)
