"""A lean meter transport for very large fleets: one ``asyncio.Protocol`` per meter over
the MQTT 3.1.1 codec of :mod:`hes_sim.protocols.mqtt_codec`, keep-alives from one shared
timer. aiomqtt stays where a full client fits (the head-end, tools)."""

from hes_sim.meter_sim.lean.context import LeanOptions, LeanStats
from hes_sim.meter_sim.lean.factory import LeanLinkFactory, lean_link_factory, loopback_sources
from hes_sim.meter_sim.lean.keepalive import KeepAliveScheduler, KeepAliveWheel
from hes_sim.meter_sim.lean.link import LeanLink

__all__ = [
    "KeepAliveScheduler",
    "KeepAliveWheel",
    "LeanLink",
    "LeanLinkFactory",
    "LeanOptions",
    "LeanStats",
    "lean_link_factory",
    "loopback_sources",
]
