"""xDLMS services with logical-name referencing: GET, SET, ACTION and their responses,
plus EXCEPTION-Response (DLMS Green Book 9.3). Requests and responses are both encoded and
decoded, so that the meter and the head-end share one codec.

    GET-Request-Normal     C0 01 iid class(2) obis(6) attr(1) [00 | 01 selector data]
    GET-Request-Next       C0 02 iid block-number(4)
    GET-Response-Normal    C4 01 iid (00 data | 01 data-access-result)
    GET-Response-Block     C4 02 iid last(1) block-number(4) (00 octets | 01 dar)
    SET-Request-Normal     C1 01 iid class obis attr [00 | 01 selector data] data
    SET-Response-Normal    C5 01 iid data-access-result
    ACTION-Request-Normal  C3 01 iid class obis method (00 | 01 data)
    ACTION-Response-Normal C7 01 iid action-result (00 | 01 (00 data | 01 dar))
    EXCEPTION-Response     D8 state-error service-error [invocation counter(4)]
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from hes_sim.errors import CodecError
from hes_sim.protocols import axdr
from hes_sim.protocols.axdr import Data

GET_REQUEST, SET_REQUEST, ACTION_REQUEST = 0xC0, 0xC1, 0xC3
GET_RESPONSE, SET_RESPONSE, ACTION_RESPONSE = 0xC4, 0xC5, 0xC7
EXCEPTION_RESPONSE = 0xD8
NORMAL, NEXT_OR_BLOCK = 0x01, 0x02
_DESCRIPTOR = struct.Struct(">H6sb")  # class id, logical name, attribute or method id


class DataAccessResult(IntEnum):
    SUCCESS = 0
    HARDWARE_FAULT = 1
    TEMPORARY_FAILURE = 2
    READ_WRITE_DENIED = 3
    OBJECT_UNDEFINED = 4
    OBJECT_CLASS_INCONSISTENT = 9
    OBJECT_UNAVAILABLE = 11
    TYPE_UNMATCHED = 12
    SCOPE_OF_ACCESS_VIOLATED = 13
    DATA_BLOCK_UNAVAILABLE = 14
    LONG_GET_ABORTED = 15
    NO_LONG_GET_IN_PROGRESS = 16
    OTHER_REASON = 250


class StateError(IntEnum):
    SERVICE_NOT_ALLOWED = 1
    SERVICE_UNKNOWN = 2


class ServiceError(IntEnum):
    OPERATION_NOT_POSSIBLE = 1
    SERVICE_NOT_SUPPORTED = 2
    OTHER_REASON = 3
    PDU_TOO_LONG = 4
    DECIPHERING_ERROR = 5
    INVOCATION_COUNTER_ERROR = 6


@dataclass(frozen=True, slots=True)
class Reference:
    """One attribute or method of one COSEM object."""

    class_id: int
    obis: bytes  # 6 bytes
    index: int  # attribute or method id


@dataclass(frozen=True, slots=True)
class Selection:
    selector: int
    parameters: Data


@dataclass(frozen=True, slots=True)
class GetRequest:
    invoke_id: int  # the invoke-id-and-priority byte, echoed in the response
    attribute: Reference
    selection: Selection | None = None


@dataclass(frozen=True, slots=True)
class GetNextRequest:
    invoke_id: int
    block_number: int


@dataclass(frozen=True, slots=True)
class SetRequest:
    invoke_id: int
    attribute: Reference
    value: Data
    selection: Selection | None = None


@dataclass(frozen=True, slots=True)
class ActionRequest:
    invoke_id: int
    method: Reference
    parameters: Data | None = None


@dataclass(frozen=True, slots=True)
class GetResponse:
    invoke_id: int
    result: Data | DataAccessResult


@dataclass(frozen=True, slots=True)
class GetBlockResponse:
    invoke_id: int
    last: bool
    block_number: int
    result: bytes | DataAccessResult  # raw data of this block


@dataclass(frozen=True, slots=True)
class SetResponse:
    invoke_id: int
    result: DataAccessResult


@dataclass(frozen=True, slots=True)
class ActionResponse:
    invoke_id: int
    result: DataAccessResult  # action-result shares these codes
    return_value: Data | DataAccessResult | None = None


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    state_error: StateError
    service_error: ServiceError
    invocation_counter: int | None = None  # the value expected, with INVOCATION_COUNTER_ERROR


Request = GetRequest | GetNextRequest | SetRequest | ActionRequest
Response = GetResponse | GetBlockResponse | SetResponse | ActionResponse | ExceptionResponse


# ------------------------------------------------------------------ encoding


def encode(apdu: Request | Response) -> bytes:
    match apdu:
        case GetRequest(invoke_id, ref, selection):
            return bytes([GET_REQUEST, NORMAL, invoke_id]) + _ref(ref) + _selection(selection)
        case GetNextRequest(invoke_id, block):
            return bytes([GET_REQUEST, NEXT_OR_BLOCK, invoke_id]) + block.to_bytes(4, "big")
        case SetRequest(invoke_id, ref, value, selection):
            head = bytes([SET_REQUEST, NORMAL, invoke_id]) + _ref(ref) + _selection(selection)
            return head + axdr.encode(value)
        case ActionRequest(invoke_id, ref, parameters):
            body = b"\x00" if parameters is None else b"\x01" + axdr.encode(parameters)
            return bytes([ACTION_REQUEST, NORMAL, invoke_id]) + _ref(ref) + body
        case GetResponse(invoke_id, result):
            return bytes([GET_RESPONSE, NORMAL, invoke_id]) + _get_data_result(result)
        case GetBlockResponse(invoke_id, last, block, result):
            head = bytes([GET_RESPONSE, NEXT_OR_BLOCK, invoke_id, int(last)]) + block.to_bytes(
                4, "big"
            )
            if isinstance(result, DataAccessResult):
                return head + bytes([1, result])
            return head + b"\x00" + axdr.encode_length(len(result)) + result
        case SetResponse(invoke_id, result):
            return bytes([SET_RESPONSE, NORMAL, invoke_id, result])
        case ActionResponse(invoke_id, result, value):
            body = b"\x00" if value is None else b"\x01" + _get_data_result(value)
            return bytes([ACTION_RESPONSE, NORMAL, invoke_id, result]) + body
        case ExceptionResponse(state, service, counter):
            tail = b"" if counter is None else counter.to_bytes(4, "big")
            return bytes([EXCEPTION_RESPONSE, state, service]) + tail
    raise TypeError(f"not an xDLMS APDU: {apdu!r}")  # pragma: no cover - exhaustive above


def _ref(ref: Reference) -> bytes:
    return _DESCRIPTOR.pack(ref.class_id, ref.obis, ref.index)


def _selection(selection: Selection | None) -> bytes:
    if selection is None:
        return b"\x00"
    return bytes([1, selection.selector]) + axdr.encode(selection.parameters)


def _get_data_result(result: Data | DataAccessResult) -> bytes:
    if isinstance(result, DataAccessResult):
        return bytes([1, result])
    return b"\x00" + axdr.encode(result)


# ------------------------------------------------------------------ decoding


def decode(apdu: bytes) -> Request | Response:
    """One plain xDLMS APDU; anything else raises CodecError."""
    if len(apdu) < 3:
        raise CodecError("xdlms", f"APDU of {len(apdu)} bytes")
    tag, choice = apdu[0], apdu[1]
    if tag == EXCEPTION_RESPONSE:
        return _exception(apdu)
    invoke_id = apdu[2]
    try:
        match (tag, choice):
            case (0xC0, 0x01):
                ref, position = _read_ref(apdu, 3)
                selection, position = _read_selection(apdu, position)
                _end(apdu, position)
                return GetRequest(invoke_id, ref, selection)
            case (0xC0, 0x02):
                _exact(apdu, 7)
                return GetNextRequest(invoke_id, int.from_bytes(apdu[3:7], "big"))
            case (0xC1, 0x01):
                ref, position = _read_ref(apdu, 3)
                selection, position = _read_selection(apdu, position)
                return SetRequest(invoke_id, ref, axdr.decode(apdu[position:]), selection)
            case (0xC3, 0x01):
                ref, position = _read_ref(apdu, 3)
                return ActionRequest(invoke_id, ref, _optional_data(apdu, position))
            case (0xC4, 0x01):
                return GetResponse(invoke_id, _read_get_data_result(apdu, 3))
            case (0xC4, 0x02):
                return _block(apdu, invoke_id)
            case (0xC5, 0x01):
                _exact(apdu, 4)
                return SetResponse(invoke_id, DataAccessResult(apdu[3]))
            case (0xC7, 0x01):
                if len(apdu) < 5:
                    raise CodecError("xdlms", "ACTION-Response too short")
                value = None if apdu[4] == 0 else _read_get_data_result(apdu, 5)
                if apdu[4] not in (0, 1):
                    raise CodecError("xdlms", "bad return-parameters flag")
                return ActionResponse(invoke_id, DataAccessResult(apdu[3]), value)
    except ValueError as exc:  # an enum value outside its range
        raise CodecError("xdlms", str(exc)) from exc
    raise CodecError("xdlms", f"unsupported APDU {tag:02x} {choice:02x}")


def _read_ref(apdu: bytes, position: int) -> tuple[Reference, int]:
    if position + _DESCRIPTOR.size > len(apdu):
        raise CodecError("xdlms", "truncated attribute descriptor")
    class_id, obis, index = _DESCRIPTOR.unpack_from(apdu, position)
    return Reference(class_id, obis, index), position + _DESCRIPTOR.size


def _read_selection(apdu: bytes, position: int) -> tuple[Selection | None, int]:
    if position >= len(apdu):
        raise CodecError("xdlms", "truncated before access-selection")
    if apdu[position] == 0:
        return None, position + 1
    if apdu[position] != 1 or position + 2 > len(apdu):
        raise CodecError("xdlms", "bad access-selection")
    selector = apdu[position + 1]
    parameters, position = axdr.decode_at(apdu, position + 2)
    return Selection(selector, parameters), position


def _optional_data(apdu: bytes, position: int) -> Data | None:
    if position >= len(apdu):
        raise CodecError("xdlms", "truncated before the optional data flag")
    if apdu[position] == 0:
        _end(apdu, position + 1)
        return None
    if apdu[position] != 1:
        raise CodecError("xdlms", "bad optional data flag")
    return axdr.decode(apdu[position + 1 :])


def _read_get_data_result(apdu: bytes, position: int) -> Data | DataAccessResult:
    if position >= len(apdu):
        raise CodecError("xdlms", "truncated before the result")
    if apdu[position] == 0:
        return axdr.decode(apdu[position + 1 :])
    _exact(apdu, position + 2)
    return DataAccessResult(apdu[position + 1])


def _block(apdu: bytes, invoke_id: int) -> GetBlockResponse:
    if len(apdu) < 10:
        raise CodecError("xdlms", "GET-Response-With-Datablock too short")
    last, block = apdu[3] != 0, int.from_bytes(apdu[4:8], "big")
    if apdu[8] == 1:
        _exact(apdu, 10)
        return GetBlockResponse(invoke_id, last, block, DataAccessResult(apdu[9]))
    size, position = axdr.decode_length(apdu, 9)
    _exact(apdu, position + size)
    return GetBlockResponse(invoke_id, last, block, apdu[position:])


def _exception(apdu: bytes) -> ExceptionResponse:
    try:
        state, service = StateError(apdu[1]), ServiceError(apdu[2])
    except ValueError as exc:
        raise CodecError("xdlms", str(exc)) from exc
    if len(apdu) == 7:
        return ExceptionResponse(state, service, int.from_bytes(apdu[3:7], "big"))
    _exact(apdu, 3)
    return ExceptionResponse(state, service)


def _exact(apdu: bytes, size: int) -> None:
    if len(apdu) != size:
        raise CodecError("xdlms", f"{len(apdu)} bytes where {size} were expected")


def _end(apdu: bytes, position: int) -> None:
    if position != len(apdu):
        raise CodecError("xdlms", "bytes after the end of the APDU")
