"""``lean_link_factory``: a :data:`LinkFactory` of lean links, one per meter.

The factory owns what its links share: one keep-alive scheduler (one timer for all of
them), one dialer (the broker's address looked up once, source addresses in turn) and
one set of counters. Use it where ``aiomqtt_link_factory`` is used; to get the 4G link
model, give it the link proxy's address as the broker, as for any other client.
"""

from __future__ import annotations

from collections.abc import Sequence

from hes_sim.broker_address import BrokerAddress
from hes_sim.meter_sim.lean.context import LeanOptions, LeanStats, LinkContext, WireTotals
from hes_sim.meter_sim.lean.dialer import Dialer
from hes_sim.meter_sim.lean.keepalive import KeepAliveScheduler
from hes_sim.meter_sim.lean.link import LeanLink


class LeanLinkFactory:
    """``factory(meter_id)`` is a :class:`LeanLink` to open with ``async with``."""

    def __init__(self, broker: BrokerAddress, options: LeanOptions | None = None) -> None:
        options = options or LeanOptions()
        self.context = LinkContext(
            broker,
            options,
            LeanStats(),
            KeepAliveScheduler(options.keepalive_s, pingresp_timeout_s=options.pingresp_timeout_s),
            Dialer(broker, options.source_hosts),
        )

    @property
    def stats(self) -> LeanStats:
        return self.context.stats

    def wire_totals(self) -> WireTotals:
        return self.context.stats.totals()

    @property
    def keepalive(self) -> KeepAliveScheduler:
        return self.context.keepalive

    def __call__(self, meter_id: str) -> LeanLink:
        return LeanLink(meter_id, self.context)


def lean_link_factory(
    broker: BrokerAddress,
    keepalive_s: int = 60,
    timeout_s: float = 30.0,
    *,
    source_hosts: Sequence[str] = (),
    pingresp_timeout_s: float | None = None,
    max_inflight: int = 16,
    max_queued: int = 64,
) -> LeanLinkFactory:
    """Links like ``aiomqtt_link_factory``'s (same CONNECT, will and state topic), each a
    bare protocol object. ``timeout_s`` (wall) bounds the connect, each acknowledgement
    and the goodbye; ``source_hosts`` spreads connections over loopback addresses."""
    return LeanLinkFactory(
        broker,
        LeanOptions(
            keepalive_s=keepalive_s,
            connect_timeout_s=timeout_s,
            ack_timeout_s=timeout_s,
            pingresp_timeout_s=pingresp_timeout_s,
            max_inflight=max_inflight,
            max_queued=max_queued,
            source_hosts=tuple(source_hosts),
        ),
    )


def loopback_sources(count: int) -> tuple[str, ...]:
    """``127.0.0.1`` … ``127.0.0.<count>``: source addresses for many connections."""
    if not 1 <= count <= 254:
        raise ValueError(f"{count} loopback sources: 1 to 254 are available in 127.0.0.x")
    return tuple(f"127.0.0.{n}" for n in range(1, count + 1))
