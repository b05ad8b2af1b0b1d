"""One DLMS association with a meter, as a sans-IO state machine: APDU in, APDU out.

    IDLE --AARQ, no authentication--> ASSOCIATED (public: read what is public)
    IDLE --AARQ, HLS GMAC, ciphered context--> AWAITING_HLS --f(StoC) verified--> ASSOCIATED
    any --RLRQ--> IDLE;  any --AARQ--> a new association replaces the old one

In a ciphered association every request must be ciphered (service-specific glo- or
general-glo-ciphering), its GCM tag must verify, and its invocation counter must be above
the last one accepted from that client; the answer is ciphered the same way with the
meter's own counter. Refusals are EXCEPTION-Responses in the clear, as meters send them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import structlog

from hes_sim.errors import CodecError
from hes_sim.meter_sim.cosem.model import Attribute, Context, CosemObject, Level, ObjectModel
from hes_sim.meter_sim.cosem.values import ASSOCIATION
from hes_sim.meter_sim.meter import VirtualMeter
from hes_sim.protocols import acse, axdr, security, xdlms
from hes_sim.protocols.acse import (
    ApplicationContext,
    AssociationResponse,
    AssociationResult,
    Conformance,
    Diagnostic,
    Mechanism,
)
from hes_sim.protocols.security import CIPHERED_TAG, CipheredTag, Keys
from hes_sim.protocols.xdlms import DataAccessResult, ServiceError, StateError

log = structlog.get_logger(__name__)
METER_MAX_PDU = 1024
CIPHER_OVERHEAD = 40  # tag, length, system title, security control, counter, GCM tag
BLOCK_HEADER = 12  # C4 02 iid last block-number(4) choice length(up to 3)
HLS_METHOD = 1  # reply_to_HLS_authentication of the association object
ASSOCIATION_CLASS = 15
_REQUEST_TAGS = set(CipheredTag) - {
    CipheredTag.GLO_INITIATE_REQUEST,
    CipheredTag.GLO_INITIATE_RESPONSE,
}


class SessionState(Enum):
    IDLE = "idle"
    AWAITING_HLS = "awaiting_hls"
    ASSOCIATED = "associated"


@dataclass(frozen=True, slots=True)
class Identity:
    """The meter's suite-0 identity."""

    system_title: bytes
    keys: Keys


@dataclass(slots=True)
class _PendingGet:
    invoke_id: int
    raw: bytes
    sent: int  # bytes of ``raw`` already sent
    block_number: int  # of the last block sent
    block_size: int


class _Refusal(Exception):  # noqa: N818 - an internal signal, answered as an exception-response
    def __init__(self, service_error: ServiceError, counter: int | None = None) -> None:
        super().__init__(service_error.name)
        self.response = xdlms.ExceptionResponse(
            StateError.SERVICE_NOT_ALLOWED, service_error, counter
        )


class DlmsSession:
    def __init__(
        self,
        meter: VirtualMeter,
        model: ObjectModel,
        identity: Identity,
        challenge: Callable[[], bytes] = lambda: secrets.token_bytes(16),
    ) -> None:
        self.meter = meter
        self._model = model
        self._identity = identity
        self._challenge = challenge
        self.state = SessionState.IDLE
        self.level = Level.PUBLIC
        self._ciphered = False
        self._client_title: bytes | None = None
        self._ctos = b""
        self._stoc = b""
        self._client_max_pdu = METER_MAX_PDU
        self.conformance = 0
        self._pending: _PendingGet | None = None
        self.refused = 0  # requests answered with an exception-response (a metric source)

    # ---------------------------------------------------------------- entry point

    def handle(self, apdu: bytes, now: float) -> bytes | None:
        """The answer to one APDU (None: nothing to answer)."""
        if not apdu:
            return None
        if apdu[0] == acse.AARQ:
            return self._associate(apdu)
        if acse.is_release_request(apdu):
            self._reset()
            return acse.encode_rlre()
        try:
            return self._respond(apdu, now)
        except _Refusal as refusal:
            self.refused += 1
            return xdlms.encode(refusal.response)
        except Exception:
            # a bug in one request must not end the meter: answer, log, carry on
            log.exception("request_failed", meter_id=self.meter.meter_id)
            return xdlms.encode(
                xdlms.ExceptionResponse(StateError.SERVICE_NOT_ALLOWED, ServiceError.OTHER_REASON)
            )

    def _respond(self, apdu: bytes, now: float) -> bytes:
        if self.state is SessionState.IDLE:
            raise _Refusal(ServiceError.OPERATION_NOT_POSSIBLE)
        plain, form = self._unprotect(apdu)
        request = _decode_request(plain)
        response = self._serve(request, Context(self.meter, now))
        return self._protect(xdlms.encode(response), form)

    # ---------------------------------------------------------------- association

    def _reset(self) -> None:
        self.state = SessionState.IDLE
        self.level = Level.PUBLIC
        self._ciphered = False
        self._client_title = None
        self._pending = None

    def _associate(self, apdu: bytes) -> bytes:
        """A new association replaces the current one only once it is accepted."""
        try:
            request = acse.decode_aarq(apdu)
        except CodecError:
            return self._reject(ApplicationContext.LN, Diagnostic.NO_REASON_GIVEN)
        if request.mechanism is Mechanism.NONE and (
            request.application_context is ApplicationContext.LN
        ):
            return self._associate_public(request)
        if request.mechanism is not Mechanism.HIGH_GMAC:
            return self._reject(
                request.application_context, Diagnostic.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED
            )
        if request.application_context is not ApplicationContext.LN_CIPHERED:
            return self._reject(
                request.application_context, Diagnostic.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED
            )
        return self._associate_hls(request)

    def _associate_public(self, request: acse.AssociationRequest) -> bytes:
        try:
            initiate = acse.decode_initiate_request(request.user_information)
        except CodecError:
            return self._reject(ApplicationContext.LN, Diagnostic.NO_REASON_GIVEN)
        self._reset()
        self._negotiate(initiate, ciphered=False)
        self.state = SessionState.ASSOCIATED
        return acse.encode_aare(
            AssociationResponse(
                ApplicationContext.LN,
                AssociationResult.ACCEPTED,
                Diagnostic.NULL,
                user_information=self._initiate_response(),
            )
        )

    def _associate_hls(self, request: acse.AssociationRequest) -> bytes:
        title = request.calling_title
        context = ApplicationContext.LN_CIPHERED
        if title is None or len(title) != security.SYSTEM_TITLE_SIZE:
            return self._reject(context, Diagnostic.CALLING_AP_TITLE_NOT_RECOGNIZED)
        if not request.calling_authentication_value:
            return self._reject(context, Diagnostic.AUTHENTICATION_REQUIRED)
        try:
            ciphered = security.parse(request.user_information)
            plain = security.decrypt(ciphered, title, self._identity.keys)
            self._check_counter(title, ciphered.invocation_counter)
            initiate = acse.decode_initiate_request(plain)
        except (CodecError, _Refusal):
            return self._reject(context, Diagnostic.AUTHENTICATION_FAILURE)
        if ciphered.tag is not CipheredTag.GLO_INITIATE_REQUEST:
            return self._reject(context, Diagnostic.NO_REASON_GIVEN)
        self._reset()
        self._accept_counter(title, ciphered.invocation_counter)
        self._client_title = title
        self._ctos = request.calling_authentication_value
        self._stoc = self._challenge()
        self._negotiate(initiate, ciphered=True)
        self.state = SessionState.AWAITING_HLS
        user_information = security.encrypt(
            self._initiate_response(),
            CipheredTag.GLO_INITIATE_RESPONSE,
            self._identity.system_title,
            self._identity.keys,
            self.meter.next_invocation_counter(),
        )
        return acse.encode_aare(
            AssociationResponse(
                context,
                AssociationResult.ACCEPTED,
                Diagnostic.AUTHENTICATION_REQUIRED,
                responding_title=self._identity.system_title,
                mechanism=Mechanism.HIGH_GMAC,
                responding_authentication_value=self._stoc,
                user_information=user_information,
            )
        )

    def _negotiate(self, initiate: acse.InitiateRequest, *, ciphered: bool) -> None:
        offered = (
            Conformance.SERVER if ciphered else Conformance.SERVER & ~Conformance.GENERAL_PROTECTION
        )
        self.conformance = initiate.proposed_conformance & offered
        proposed = initiate.client_max_receive_pdu
        self._client_max_pdu = METER_MAX_PDU if proposed in (0, 0xFFFF) else min(proposed, 0xFFFF)
        self._ciphered = ciphered

    def _initiate_response(self) -> bytes:
        return acse.encode_initiate_response(acse.InitiateResponse(self.conformance, METER_MAX_PDU))

    def _reject(self, context: ApplicationContext, diagnostic: Diagnostic) -> bytes:
        self.refused += 1
        return acse.encode_aare(
            AssociationResponse(context, AssociationResult.REJECTED_PERMANENT, diagnostic)
        )

    def _verify_hls(self, parameters: axdr.Data | None) -> xdlms.ActionResponse:
        assert self._client_title is not None  # noqa: S101 - set with AWAITING_HLS
        try:
            answer = parameters.bytes_value if parameters is not None else b""
            security.check_gmac_answer(answer, self._client_title, self._identity.keys, self._stoc)
        except CodecError:
            self.refused += 1
            return xdlms.ActionResponse(0, DataAccessResult.READ_WRITE_DENIED)
        self.state = SessionState.ASSOCIATED
        self.level = Level.MANAGEMENT
        ours = security.gmac_answer(
            self._identity.system_title,
            self._identity.keys,
            self.meter.next_invocation_counter(),
            self._ctos,
        )
        return xdlms.ActionResponse(0, DataAccessResult.SUCCESS, axdr.octets(ours))

    # ---------------------------------------------------------------- protection

    def _check_counter(self, title: bytes, counter: int) -> None:
        last = self.meter.client_counters.get(title)
        if last is not None and counter <= last:
            raise _Refusal(ServiceError.INVOCATION_COUNTER_ERROR, last + 1)

    def _accept_counter(self, title: bytes, counter: int) -> None:
        self.meter.client_counters[title] = counter

    def _unprotect(self, apdu: bytes) -> tuple[bytes, CipheredTag | None]:
        if apdu[0] not in _REQUEST_TAGS:
            if self._ciphered:
                raise _Refusal(ServiceError.OPERATION_NOT_POSSIBLE)
            return apdu, None
        if not self._ciphered or self._client_title is None:
            raise _Refusal(ServiceError.OPERATION_NOT_POSSIBLE)
        try:
            ciphered = security.parse(apdu)
            plain = security.decrypt(ciphered, self._client_title, self._identity.keys)
        except CodecError:
            raise _Refusal(ServiceError.DECIPHERING_ERROR) from None
        if ciphered.system_title not in (None, self._client_title):
            raise _Refusal(ServiceError.DECIPHERING_ERROR)
        self._check_counter(self._client_title, ciphered.invocation_counter)
        self._accept_counter(self._client_title, ciphered.invocation_counter)
        return plain, ciphered.tag

    def _protect(self, plain: bytes, form: CipheredTag | None) -> bytes:
        if form is None:
            return plain
        tag = form if form is CipheredTag.GENERAL_GLO_CIPHERING else CIPHERED_TAG[plain[0]]
        return security.encrypt(
            plain,
            CipheredTag(tag),
            self._identity.system_title,
            self._identity.keys,
            self.meter.next_invocation_counter(),
        )

    # ---------------------------------------------------------------- services

    def _serve(self, request: xdlms.Request, ctx: Context) -> xdlms.Response:
        if self.state is SessionState.AWAITING_HLS:
            if (
                isinstance(request, xdlms.ActionRequest)
                and request.method.class_id == ASSOCIATION_CLASS
                and request.method.obis == ASSOCIATION
                and request.method.index == HLS_METHOD
            ):
                return _with_invoke_id(self._verify_hls(request.parameters), request.invoke_id)
            raise _Refusal(ServiceError.OPERATION_NOT_POSSIBLE)
        match request:
            case xdlms.GetRequest():
                return self._get(request, ctx)
            case xdlms.GetNextRequest():
                return self._get_next(request)
            case xdlms.SetRequest():
                return xdlms.SetResponse(request.invoke_id, self._set(request, ctx))
            case xdlms.ActionRequest():
                return self._action(request, ctx)
        raise _Refusal(ServiceError.SERVICE_NOT_SUPPORTED)  # pragma: no cover

    def _object(self, ref: xdlms.Reference) -> CosemObject | DataAccessResult:
        obj = self._model.find(ref.obis)
        if obj is None:
            return DataAccessResult.OBJECT_UNDEFINED
        if obj.class_id != ref.class_id:
            return DataAccessResult.OBJECT_CLASS_INCONSISTENT
        return obj

    def _attribute(self, ref: xdlms.Reference) -> Attribute | DataAccessResult:
        obj = self._object(ref)
        if isinstance(obj, DataAccessResult):
            return obj
        return obj.attributes.get(ref.index, DataAccessResult.OBJECT_UNAVAILABLE)

    def _readable(self, request: xdlms.GetRequest) -> Attribute | DataAccessResult:
        attribute = self._attribute(request.attribute)
        if isinstance(attribute, DataAccessResult):
            return attribute
        if attribute.read_level is Level.MANAGEMENT and self.level is not Level.MANAGEMENT:
            return DataAccessResult.READ_WRITE_DENIED
        if request.selection is not None and not attribute.selective:
            return DataAccessResult.SCOPE_OF_ACCESS_VIOLATED
        return attribute

    def _get(self, request: xdlms.GetRequest, ctx: Context) -> xdlms.Response:
        self._pending = None
        attribute = self._readable(request)
        if isinstance(attribute, DataAccessResult):
            return xdlms.GetResponse(request.invoke_id, attribute)
        try:
            value = attribute.read(ctx, request.selection)
        except CodecError as exc:
            return xdlms.GetResponse(request.invoke_id, _access_result(exc))
        response = xdlms.GetResponse(request.invoke_id, value)
        limit = self._client_max_pdu - (CIPHER_OVERHEAD if self._ciphered else 0)
        if len(xdlms.encode(response)) <= limit:
            return response
        raw = axdr.encode(value)
        self._pending = _PendingGet(request.invoke_id, raw, 0, 0, max(16, limit - BLOCK_HEADER))
        return self._next_block()

    def _get_next(self, request: xdlms.GetNextRequest) -> xdlms.Response:
        pending = self._pending
        if pending is None:
            return xdlms.GetBlockResponse(
                request.invoke_id,
                True,
                request.block_number,
                DataAccessResult.NO_LONG_GET_IN_PROGRESS,
            )
        if request.block_number != pending.block_number:
            self._pending = None
            return xdlms.GetBlockResponse(
                request.invoke_id,
                True,
                request.block_number,
                DataAccessResult.DATA_BLOCK_UNAVAILABLE,
            )
        return self._next_block()

    def _next_block(self) -> xdlms.GetBlockResponse:
        pending = self._pending
        assert pending is not None  # noqa: S101 - callers check
        chunk = pending.raw[pending.sent : pending.sent + pending.block_size]
        pending.sent += len(chunk)
        pending.block_number += 1
        last = pending.sent >= len(pending.raw)
        if last:
            self._pending = None
        return xdlms.GetBlockResponse(pending.invoke_id, last, pending.block_number, chunk)

    def _set(self, request: xdlms.SetRequest, ctx: Context) -> DataAccessResult:
        attribute = self._attribute(request.attribute)
        if isinstance(attribute, DataAccessResult):
            return attribute
        if attribute.write is None or self.level is not Level.MANAGEMENT:
            return DataAccessResult.READ_WRITE_DENIED
        if request.selection is not None:
            return DataAccessResult.SCOPE_OF_ACCESS_VIOLATED
        try:
            return attribute.write(ctx, request.value)
        except CodecError as exc:
            return _access_result(exc)

    def _action(self, request: xdlms.ActionRequest, ctx: Context) -> xdlms.ActionResponse:
        obj = self._object(request.method)
        if isinstance(obj, DataAccessResult):
            return xdlms.ActionResponse(request.invoke_id, obj)
        method = obj.methods.get(request.method.index)
        if method is None:
            return xdlms.ActionResponse(request.invoke_id, DataAccessResult.OBJECT_UNAVAILABLE)
        if method.level is Level.MANAGEMENT and self.level is not Level.MANAGEMENT:
            return xdlms.ActionResponse(request.invoke_id, DataAccessResult.READ_WRITE_DENIED)
        try:
            result, value = method.invoke(ctx, request.parameters)
        except CodecError as exc:
            return xdlms.ActionResponse(request.invoke_id, _access_result(exc))
        return xdlms.ActionResponse(request.invoke_id, result, value)


def _decode_request(plain: bytes) -> xdlms.Request:
    try:
        request = xdlms.decode(plain)
    except CodecError:
        raise _Refusal(ServiceError.SERVICE_NOT_SUPPORTED) from None
    if not isinstance(
        request, xdlms.GetRequest | xdlms.GetNextRequest | xdlms.SetRequest | xdlms.ActionRequest
    ):
        raise _Refusal(ServiceError.SERVICE_NOT_SUPPORTED)
    return request


def _access_result(exc: CodecError) -> DataAccessResult:
    return {
        "type_unmatched": DataAccessResult.TYPE_UNMATCHED,
        "scope_of_access": DataAccessResult.SCOPE_OF_ACCESS_VIOLATED,
    }.get(exc.reason, DataAccessResult.TYPE_UNMATCHED)


def _with_invoke_id(response: xdlms.ActionResponse, invoke_id: int) -> xdlms.ActionResponse:
    return xdlms.ActionResponse(invoke_id, response.result, response.return_value)
