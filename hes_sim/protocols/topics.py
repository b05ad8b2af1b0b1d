"""The MQTT topic scheme (version in the path so that it can change)."""

from __future__ import annotations

import re
from enum import StrEnum

from hes_sim.errors import CodecError

PREFIX = "mtr/v1"
METER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
SHARED_GROUP = "hes"


class Channel(StrEnum):
    UP = "up"  # meter -> head-end: pushes and responses
    DOWN = "down"  # head-end -> meter: requests
    STATE = "state"  # retained "online" / "offline"; "offline" is the last will


class MeterState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


def topic(meter_id: str, channel: Channel) -> str:
    if not METER_ID.fullmatch(meter_id):
        raise ValueError(f"meter id {meter_id!r} does not match {METER_ID.pattern}")
    return f"{PREFIX}/{meter_id}/{channel}"


def subscription(channel: Channel, *, shared: bool = False) -> str:
    """The wildcard filter for one channel of every meter (shared between HES workers)."""
    plain = f"{PREFIX}/+/{channel}"
    return f"$share/{SHARED_GROUP}/{plain}" if shared else plain


# by name: a dict lookup, where calling the enum costs a microsecond a message
_CHANNELS = {channel.value: channel for channel in Channel}


# the whole scheme in one pattern, for the head-end's every message; a name it does not
# fit goes through the checks below, which say what is wrong with it
_TOPIC = re.compile(rf"{re.escape(PREFIX)}/({METER_ID.pattern})/([a-z]+)")


def parse(topic_name: str) -> tuple[str, Channel]:
    """Split ``mtr/v1/{meter_id}/{channel}`` into its meter id and channel."""
    match = _TOPIC.fullmatch(topic_name)
    if match is not None:
        meter_id, channel_name = match.groups()
        channel = _CHANNELS.get(channel_name)
        if channel is not None:
            return meter_id, channel
    return _parse_or_refuse(topic_name)


def _parse_or_refuse(topic_name: str) -> tuple[str, Channel]:
    parts = topic_name.split("/")
    if len(parts) != 4 or f"{parts[0]}/{parts[1]}" != PREFIX:
        raise CodecError("topic", f"topic {topic_name!r} is not {PREFIX}/<meter>/<channel>")
    meter_id, channel = parts[2], parts[3]
    if not METER_ID.fullmatch(meter_id):
        raise CodecError("topic", f"bad meter id in topic {topic_name!r}")
    known = _CHANNELS.get(channel)
    if known is None:
        raise CodecError("topic", f"unknown channel in topic {topic_name!r}")
    return meter_id, known
