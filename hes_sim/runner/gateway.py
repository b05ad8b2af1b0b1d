"""The composition root of ``hes-sim gateway``: one virtual meter on a loopback TCP port."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import timedelta, timezone

from hes_sim.clock import SimClock
from hes_sim.keyring import FleetKeyring
from hes_sim.meter_sim.cosem.server import Identity
from hes_sim.meter_sim.gateway import MeterGateway
from hes_sim.meter_sim.meter import MeterKind, VirtualMeter

IST = timezone(timedelta(hours=5, minutes=30))


async def run_gateway(
    meter_id: str,
    kind: MeterKind,
    port: int,
    keyring: FleetKeyring,
    *,
    seed: int = 1,
    history_s: float = 86_400.0,
    time_scale: float = 1.0,
) -> None:
    """Serve until cancelled (Ctrl-C, SIGTERM)."""
    clock = SimClock(time.time(), time_scale)
    clock.start()
    meter = VirtualMeter.create(meter_id, kind, seed, IST)
    meter.invocation_counter = int(time.time())  # a restarted gateway never reuses an IV
    identity = Identity(keyring.system_title_for(meter_id), keyring.keys_for(meter_id))
    async with MeterGateway(meter, identity, clock, port) as gateway:
        gateway.fill_history(clock.now() - history_s)
        sys.stdout.write(
            f"gateway: meter {meter_id} ({kind}) on 127.0.0.1:{gateway.port}, "
            f"system title {identity.system_title.hex()}, "
            f"{len(meter.buffered_interval_ends())} block-load entries\n"
        )
        sys.stdout.flush()
        await asyncio.Event().wait()
