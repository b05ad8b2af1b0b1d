"""IEC 62056-47 wrapper header: the 8 bytes in front of every APDU on TCP port 4059.

version (always 1), source wPort, destination wPort, length of the APDU that follows;
each an unsigned 16-bit big-endian integer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from hes_sim.errors import CodecError

WRAPPER_VERSION = 1
HEADER = struct.Struct(">HHHH")
HEADER_SIZE = HEADER.size

# wPorts used by this project. The meter side is the management logical device (SAP 1);
# the head-end side is the client SAP that pushes are addressed to. Both are documented in
# the README; a real HES configures them per installation.
METER_WPORT = 0x0001
HES_WPORT = 0x0066  # where pushes go
HES_CLIENT_WPORT = 0x0030  # the head-end's management client (HLS), which sends requests


@dataclass(frozen=True, slots=True)
class WrapperHeader:
    source_wport: int
    destination_wport: int
    length: int
    version: int = WRAPPER_VERSION


def wrap(apdu: bytes, source_wport: int, destination_wport: int) -> bytes:
    """Prefix ``apdu`` with its wrapper header."""
    if len(apdu) > 0xFFFF:
        raise CodecError("too_long", f"APDU of {len(apdu)} bytes does not fit a wrapper frame")
    return HEADER.pack(WRAPPER_VERSION, source_wport, destination_wport, len(apdu)) + apdu


def unwrap(frame: bytes) -> tuple[WrapperHeader, bytes]:
    """Split one complete wrapper frame into its header and APDU."""
    if len(frame) < HEADER_SIZE:
        raise CodecError("wrapper", f"frame of {len(frame)} bytes is shorter than the header")
    version, source, destination, length = HEADER.unpack_from(frame)
    if version != WRAPPER_VERSION:
        raise CodecError("wrapper", f"wrapper version {version}, expected {WRAPPER_VERSION}")
    apdu = frame[HEADER_SIZE:]
    if length != len(apdu):
        raise CodecError("wrapper", f"header announces {length} bytes, frame carries {len(apdu)}")
    if length == 0:
        raise CodecError("wrapper", "empty APDU")
    return WrapperHeader(source, destination, length, version), apdu
