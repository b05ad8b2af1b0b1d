"""ACSE association APDUs (AARQ, AARE, RLRQ, RLRE) and the xDLMS InitiateRequest /
InitiateResponse inside their user-information (DLMS Green Book 9.4, 11.3).

BER-encoded: each field is ``tag length value``; only the fields DLMS uses are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from hes_sim.errors import CodecError
from hes_sim.protocols.axdr import decode_length, encode_length

AARQ, AARE, RLRQ, RLRE = 0x60, 0x61, 0x62, 0x63
INITIATE_REQUEST, INITIATE_RESPONSE = 0x01, 0x08
# object identifiers 2.16.756.5.8.1.<id> (application context) and 2.16.756.5.8.2.<id>
APPLICATION_CONTEXT_OID = bytes.fromhex("608574050801")
MECHANISM_OID = bytes.fromhex("608574050802")
DLMS_VERSION = 6
VAA_NAME_LN = 0x0007


class ApplicationContext(IntEnum):
    LN = 1
    LN_CIPHERED = 3


class Mechanism(IntEnum):
    NONE = 0  # lowest level security
    LOW = 1  # a password
    HIGH_GMAC = 5  # challenges answered with GMAC tags (HLS pass 3 and 4)


class AssociationResult(IntEnum):
    ACCEPTED = 0
    REJECTED_PERMANENT = 1
    REJECTED_TRANSIENT = 2


class Diagnostic(IntEnum):
    """acse-service-user diagnostics."""

    NULL = 0
    NO_REASON_GIVEN = 1
    APPLICATION_CONTEXT_NAME_NOT_SUPPORTED = 2
    CALLING_AP_TITLE_NOT_RECOGNIZED = 3
    AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED = 11
    AUTHENTICATION_MECHANISM_NAME_REQUIRED = 12
    AUTHENTICATION_FAILURE = 13
    AUTHENTICATION_REQUIRED = 14


class Conformance:
    """Conformance block bits (24 bits, bit 0 the most significant), as used here."""

    GENERAL_PROTECTION = 1 << 22
    BLOCK_TRANSFER_WITH_GET = 1 << 12
    DATA_NOTIFICATION = 1 << 7
    SELECTIVE_ACCESS = 1 << 2
    SET = 1 << 3
    GET = 1 << 4
    ACTION = 1 << 0
    SERVER = (
        GET
        | SET
        | ACTION
        | SELECTIVE_ACCESS
        | BLOCK_TRANSFER_WITH_GET
        | DATA_NOTIFICATION
        | GENERAL_PROTECTION
    )


@dataclass(frozen=True, slots=True)
class AssociationRequest:
    application_context: ApplicationContext
    calling_title: bytes | None = None
    mechanism: Mechanism = Mechanism.NONE
    calling_authentication_value: bytes | None = None
    user_information: bytes = b""  # an InitiateRequest, plain or in glo-initiate-request


@dataclass(frozen=True, slots=True)
class AssociationResponse:
    application_context: ApplicationContext
    result: AssociationResult
    diagnostic: Diagnostic
    responding_title: bytes | None = None
    mechanism: Mechanism = Mechanism.NONE
    responding_authentication_value: bytes | None = None
    user_information: bytes = b""


@dataclass(frozen=True, slots=True)
class InitiateRequest:
    proposed_conformance: int
    client_max_receive_pdu: int
    dedicated_key: bytes | None = None


@dataclass(frozen=True, slots=True)
class InitiateResponse:
    negotiated_conformance: int
    server_max_receive_pdu: int


# ------------------------------------------------------------------ BER fields


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(value)) + value


def _fields(body: bytes) -> dict[int, bytes]:
    fields: dict[int, bytes] = {}
    position = 0
    while position < len(body):
        tag = body[position]
        size, position = decode_length(body, position + 1)
        if position + size > len(body):
            raise CodecError("acse", f"field 0x{tag:02x} runs past the end")
        fields[tag] = body[position : position + size]
        position += size
    return fields


def _unwrap(apdu: bytes, tag: int) -> dict[int, bytes]:
    if not apdu or apdu[0] != tag:
        raise CodecError("acse", f"expected 0x{tag:02x}, got {apdu[:1].hex() or 'nothing'}")
    size, position = decode_length(apdu, 1)
    if position + size != len(apdu):
        raise CodecError("acse", "length does not match the APDU")
    return _fields(apdu[position:])


def _context_name(value: int) -> bytes:
    return _tlv(0xA1, _tlv(0x06, APPLICATION_CONTEXT_OID + bytes([value])))


def _mechanism_name(mechanism: Mechanism) -> bytes:
    return MECHANISM_OID + bytes([mechanism])


def _octets_in(value: bytes | None, inner_tag: int) -> bytes | None:
    if value is None:
        return None
    fields = _fields(value)
    if inner_tag not in fields:
        raise CodecError("acse", "expected an inner field")
    return fields[inner_tag]


# ------------------------------------------------------------------ AARQ / AARE


def encode_aarq(request: AssociationRequest) -> bytes:
    body = _context_name(request.application_context)
    if request.calling_title is not None:
        body += _tlv(0xA6, _tlv(0x04, request.calling_title))
    if request.mechanism is not Mechanism.NONE:
        body += _tlv(0x8A, b"\x07\x80") + _tlv(0x8B, _mechanism_name(request.mechanism))
    if request.calling_authentication_value is not None:
        body += _tlv(0xAC, _tlv(0x80, request.calling_authentication_value))
    body += _tlv(0xBE, _tlv(0x04, request.user_information))
    return _tlv(AARQ, body)


def decode_aarq(apdu: bytes) -> AssociationRequest:
    fields = _unwrap(apdu, AARQ)
    context = _application_context(fields)
    mechanism = Mechanism.NONE
    if 0x8B in fields:
        mechanism = _mechanism(fields[0x8B])
    user = _octets_in(fields.get(0xBE), 0x04)
    if user is None:
        raise CodecError("acse", "AARQ without user-information")
    return AssociationRequest(
        application_context=context,
        calling_title=_octets_in(fields.get(0xA6), 0x04),
        mechanism=mechanism,
        calling_authentication_value=_octets_in(fields.get(0xAC), 0x80),
        user_information=user,
    )


def encode_aare(response: AssociationResponse) -> bytes:
    body = _context_name(response.application_context)
    body += _tlv(0xA2, _tlv(0x02, bytes([response.result])))
    body += _tlv(0xA3, _tlv(0xA1, _tlv(0x02, bytes([response.diagnostic]))))
    if response.responding_title is not None:
        body += _tlv(0xA4, _tlv(0x04, response.responding_title))
    if response.mechanism is not Mechanism.NONE:
        body += _tlv(0x88, b"\x07\x80") + _tlv(0x89, _mechanism_name(response.mechanism))
    if response.responding_authentication_value is not None:
        body += _tlv(0xAA, _tlv(0x80, response.responding_authentication_value))
    if response.user_information:
        body += _tlv(0xBE, _tlv(0x04, response.user_information))
    return _tlv(AARE, body)


def decode_aare(apdu: bytes) -> AssociationResponse:
    fields = _unwrap(apdu, AARE)
    result = _octets_in(fields.get(0xA2), 0x02)
    diagnostic_field = _octets_in(fields.get(0xA3), 0xA1)
    if result is None or diagnostic_field is None:
        raise CodecError("acse", "AARE without result or diagnostic")
    diagnostic = _octets_in(diagnostic_field, 0x02)
    try:
        return AssociationResponse(
            application_context=_application_context(fields),
            result=AssociationResult(result[0]),
            diagnostic=Diagnostic(diagnostic[0] if diagnostic else 0),
            responding_title=_octets_in(fields.get(0xA4), 0x04),
            mechanism=_mechanism(fields[0x89]) if 0x89 in fields else Mechanism.NONE,
            responding_authentication_value=_octets_in(fields.get(0xAA), 0x80),
            user_information=_octets_in(fields.get(0xBE), 0x04) or b"",
        )
    except (ValueError, IndexError) as exc:
        raise CodecError("acse", f"bad AARE: {exc}") from exc


def _application_context(fields: dict[int, bytes]) -> ApplicationContext:
    name = _octets_in(fields.get(0xA1), 0x06)
    if name is None or len(name) != 7 or name[:6] != APPLICATION_CONTEXT_OID:
        raise CodecError("acse", "missing or unknown application-context-name")
    try:
        return ApplicationContext(name[6])
    except ValueError as exc:
        raise CodecError("acse", f"application context {name[6]} is not supported") from exc


def _mechanism(value: bytes) -> Mechanism:
    if len(value) != 7 or value[:6] != MECHANISM_OID:
        raise CodecError("acse", "bad mechanism-name")
    try:
        return Mechanism(value[6])
    except ValueError as exc:
        raise CodecError("acse", f"mechanism {value[6]} is not supported") from exc


# ------------------------------------------------------------------ release


def encode_rlrq() -> bytes:
    return _tlv(RLRQ, _tlv(0x80, b"\x00"))  # reason: normal


def encode_rlre() -> bytes:
    return _tlv(RLRE, _tlv(0x80, b"\x00"))


def is_release_request(apdu: bytes) -> bool:
    return bool(apdu) and apdu[0] == RLRQ


# ------------------------------------------------------------------ xDLMS initiate


def encode_initiate_request(request: InitiateRequest) -> bytes:
    key = b"\x00" if request.dedicated_key is None else b"\x01" + _tlv_raw(request.dedicated_key)
    return (
        bytes([INITIATE_REQUEST])
        + key
        + b"\x00\x00"  # response-allowed (default true), proposed quality of service
        + bytes([DLMS_VERSION])
        + _conformance(request.proposed_conformance)
        + request.client_max_receive_pdu.to_bytes(2, "big")
    )


def decode_initiate_request(data: bytes) -> InitiateRequest:
    if len(data) < 2 or data[0] != INITIATE_REQUEST:
        raise CodecError("acse", "not an InitiateRequest")
    position, key = 1, None
    if data[position] == 1:
        size = data[position + 1] if position + 1 < len(data) else 0
        key = data[position + 2 : position + 2 + size]
        position += 2 + size
    else:
        position += 1
    for _optional in range(2):  # response-allowed, proposed-quality-of-service
        if position >= len(data):
            raise CodecError("acse", "truncated InitiateRequest")
        position += 2 if data[position] == 1 else 1
    tail = data[position:]
    if len(tail) != 10 or tail[1:4] != b"\x5f\x1f\x04":
        raise CodecError("acse", "bad InitiateRequest tail")
    if tail[0] != DLMS_VERSION:
        raise CodecError("dlms_version", f"DLMS version {tail[0]} is not 6")
    return InitiateRequest(
        proposed_conformance=int.from_bytes(tail[5:8], "big"),
        client_max_receive_pdu=int.from_bytes(tail[8:10], "big"),
        dedicated_key=key,
    )


def encode_initiate_response(response: InitiateResponse) -> bytes:
    return (
        bytes([INITIATE_RESPONSE, 0x00, DLMS_VERSION])
        + _conformance(response.negotiated_conformance)
        + response.server_max_receive_pdu.to_bytes(2, "big")
        + VAA_NAME_LN.to_bytes(2, "big")
    )


def decode_initiate_response(data: bytes) -> InitiateResponse:
    if len(data) != 14 or data[0] != INITIATE_RESPONSE or data[3:6] != b"\x5f\x1f\x04":
        raise CodecError("acse", "not an InitiateResponse")
    return InitiateResponse(int.from_bytes(data[7:10], "big"), int.from_bytes(data[10:12], "big"))


def _conformance(bits: int) -> bytes:
    return b"\x5f\x1f\x04\x00" + bits.to_bytes(3, "big")


def _tlv_raw(value: bytes) -> bytes:
    return bytes([len(value)]) + value
