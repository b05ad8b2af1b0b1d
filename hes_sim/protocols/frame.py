"""Push frames as they travel on ``mtr/v1/{meter_id}/up``: wrapper header + APDU, where the
APDU is a DATA-NOTIFICATION, plain or inside general-glo-ciphering (suite 0)."""

from __future__ import annotations

import struct
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


# A suite-0 push frame whose lengths each fit one octet, as every push of this project
# does: wrapper header, general-glo-ciphering tag, system title, length, security control
# and invocation counter, read by one struct.
_SEALED_PUSH = struct.Struct(">HHHHBB8sBBI")


def split_sealed_push(frame: bytes) -> tuple[bytes, int, bytes] | None:
    """(system title, invocation counter, ciphertext and tag) of a suite-0 authenticated
    and encrypted push frame in that short form; None for any other frame, which
    ``wrapper.unwrap`` and ``security.parse`` then read or refuse, naming the fault.

    The head-end's hot path: one struct where those two build a header and a
    ``Ciphered`` each."""
    size = len(frame)
    if size < _SEALED_PUSH.size + security.TAG_SIZE:
        return None
    version, _source, _destination, length, tag, title_size, title, body_size, control, counter = (
        _SEALED_PUSH.unpack_from(frame)
    )
    body_size_expected = size - _SEALED_PUSH.size + 5  # the control and counter are in it
    if (
        version != wrapper.WRAPPER_VERSION
        or length != size - wrapper.HEADER_SIZE
        or tag != CipheredTag.GENERAL_GLO_CIPHERING
        or title_size != security.SYSTEM_TITLE_SIZE
        or body_size >= 0x80  # a long-form length: not this form
        or body_size != body_size_expected
        or control != security.SECURITY_AUTHENTICATED_ENCRYPTED
    ):
        return None
    return title, counter, frame[_SEALED_PUSH.size :]


def is_ciphered(apdu: bytes) -> bool:
    return bool(apdu) and apdu[0] == CipheredTag.GENERAL_GLO_CIPHERING


def decode_push_frame(frame: bytes) -> push.DataNotification:
    """A plain push frame (ciphered ones go through the head-end's key and counter checks)."""
    _header, apdu = wrapper.unwrap(frame)
    return push.decode(apdu)
