"""Push frames as they travel on ``mtr/v1/{meter_id}/up``: wrapper header + DATA-NOTIFICATION."""

from __future__ import annotations

from hes_sim.protocols import push, wrapper


def encode_push_frame(notification: push.DataNotification) -> bytes:
    return wrapper.wrap(push.encode(notification), wrapper.METER_WPORT, wrapper.HES_WPORT)


def decode_push_frame(frame: bytes) -> push.DataNotification:
    _header, apdu = wrapper.unwrap(frame)
    return push.decode(apdu)
