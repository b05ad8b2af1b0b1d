"""Push frames as they travel on ``mtr/v1/{meter_id}/up``: wrapper header + APDU, where the
APDU is a DATA-NOTIFICATION, plain or inside general-glo-ciphering (suite 0)."""

from __future__ import annotations

from dataclasses import dataclass

from hes_sim.protocols import push, security, wrapper
from hes_sim.protocols.security import CipheredTag, Keys


@dataclass(frozen=True, slots=True)
class Sender:
    """What a meter needs to cipher one push: its title, keys and next invocation counter."""

    system_title: bytes
    keys: Keys
    invocation_counter: int


def encode_push_frame(notification: push.DataNotification, sender: Sender | None = None) -> bytes:
    apdu = push.encode(notification)
    if sender is not None:
        apdu = security.encrypt(
            apdu,
            CipheredTag.GENERAL_GLO_CIPHERING,
            sender.system_title,
            sender.keys,
            sender.invocation_counter,
        )
    return wrapper.wrap(apdu, wrapper.METER_WPORT, wrapper.HES_WPORT)


def is_ciphered(apdu: bytes) -> bool:
    return bool(apdu) and apdu[0] == CipheredTag.GENERAL_GLO_CIPHERING


def decode_push_frame(frame: bytes) -> push.DataNotification:
    """A plain push frame (ciphered ones go through the head-end's key and counter checks)."""
    _header, apdu = wrapper.unwrap(frame)
    return push.decode(apdu)
