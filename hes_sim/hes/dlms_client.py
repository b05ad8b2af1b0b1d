"""The head-end's side of a DLMS association (HLS GMAC, suite 0), sans-IO.

Each method returns the next APDU to send and takes the APDU that came back; the caller
moves the bytes (over MQTT through the meter's 4G link, or a TCP socket). Responses are
deciphered and their GCM tags verified here, and the meter's counter must go up.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from hes_sim.errors import CodecError, HesSimError
from hes_sim.protocols import acse, axdr, security, xdlms
from hes_sim.protocols.acse import ApplicationContext, AssociationResult, Conformance, Mechanism
from hes_sim.protocols.security import CipheredTag, Keys

ASSOCIATION_LN = bytes([0, 0, 40, 0, 0, 255])
CLIENT_MAX_PDU = 1024
PROPOSED = (
    Conformance.GET
    | Conformance.SET
    | Conformance.ACTION
    | Conformance.SELECTIVE_ACCESS
    | Conformance.BLOCK_TRANSFER_WITH_GET
)
# The invoke-id-and-priority byte: priority high and service class confirmed (bits 7 and 6),
# and an invoke id in its low four bits that each request of an association takes in turn,
# so that an answer to an earlier request, come late, is not taken for the current one's.
INVOKE_FLAGS = 0xC0
INVOKE_IDS = 16


class AssociationError(HesSimError):
    """The meter refused the association or failed HLS."""


class MeterServiceError(HesSimError):
    """The meter answered with an exception-response or an APDU that does not verify."""


class LateAnswerError(MeterServiceError):
    """The answer echoes another request's invoke id: one given up on, answered late."""


class CounterExhaustedError(HesSimError):
    """The counter reached the end of what was reserved for it in the store."""


@dataclass(slots=True)
class ClientCounter:
    """The head-end's invocation counter (one per client system title); it only goes up,
    and never past ``limit`` (the end reserved in the store), so a crash cannot reuse it."""

    value: int = 0
    limit: int | None = None

    def next(self) -> int:
        if self.limit is not None and self.value >= self.limit:
            raise CounterExhaustedError(f"invocation counter reached its reserve {self.limit}")
        self.value += 1
        return self.value


class ClientAssociation:
    def __init__(
        self,
        client_title: bytes,
        meter_title: bytes,
        keys: Keys,
        counter: ClientCounter,
        challenge: bytes | None = None,
    ) -> None:
        self._client_title = client_title
        self._meter_title = meter_title
        self._keys = keys
        self._counter = counter
        self._ctos = challenge or secrets.token_bytes(16)
        self._stoc = b""
        self._meter_counter = -1
        self._requests = 0
        self._hls_request: xdlms.Request | None = None
        self.associated = False

    def next_invoke_id(self) -> int:
        """The invoke-id-and-priority byte for the next request of this association."""
        self._requests += 1
        return INVOKE_FLAGS | self._requests % INVOKE_IDS

    # ---------------------------------------------------------------- association

    def aarq(self) -> bytes:
        initiate = acse.encode_initiate_request(acse.InitiateRequest(PROPOSED, CLIENT_MAX_PDU))
        user_information = self._encrypt(initiate, CipheredTag.GLO_INITIATE_REQUEST)
        return acse.encode_aarq(
            acse.AssociationRequest(
                ApplicationContext.LN_CIPHERED,
                calling_title=self._client_title,
                mechanism=Mechanism.HIGH_GMAC,
                calling_authentication_value=self._ctos,
                user_information=user_information,
            )
        )

    def on_aare(self, apdu: bytes) -> bytes:
        """Check the AARE; the next APDU to send is HLS pass 3 (f(StoC))."""
        try:
            response = acse.decode_aare(apdu)
        except CodecError as exc:
            raise AssociationError(f"not an AARE: {exc}") from exc
        if response.result is not AssociationResult.ACCEPTED:
            raise AssociationError(f"association refused: {response.diagnostic.name}")
        if response.responding_title != self._meter_title:
            raise AssociationError("the AARE comes from another meter's system title")
        if not response.responding_authentication_value:
            raise AssociationError("the meter sent no HLS challenge")
        self._open(response.user_information, CipheredTag.GLO_INITIATE_RESPONSE)
        self._stoc = response.responding_authentication_value
        answer = security.gmac_answer(
            self._client_title, self._keys, self._counter.next(), self._stoc
        )
        method = xdlms.Reference(15, ASSOCIATION_LN, 1)
        request = xdlms.ActionRequest(self.next_invoke_id(), method, axdr.octets(answer))
        self._hls_request = request
        return self.protect(request)

    def on_hls_reply(self, apdu: bytes) -> None:
        if self._hls_request is None:
            raise AssociationError("no HLS pass 3 was sent")
        response = self.unprotect(apdu, self._hls_request)
        if not isinstance(response, xdlms.ActionResponse) or response.result:
            raise AssociationError(f"HLS pass 3 refused: {response}")
        value = response.return_value
        if not isinstance(value, axdr.Data):
            raise AssociationError("HLS pass 4 carries no f(CtoS)")
        try:
            security.check_gmac_answer(value.bytes_value, self._meter_title, self._keys, self._ctos)
        except CodecError as exc:
            raise AssociationError("the meter's f(CtoS) does not verify") from exc
        self.associated = True

    def release(self) -> bytes:
        self.associated = False
        return acse.encode_rlrq()

    # ---------------------------------------------------------------- services

    def protect(self, request: xdlms.Request) -> bytes:
        plain = xdlms.encode(request)
        return self._encrypt(plain, CipheredTag(security.CIPHERED_TAG[plain[0]]))

    def unprotect(self, apdu: bytes, request: xdlms.Request) -> xdlms.Response:
        """The meter's response to ``request``; MeterServiceError for one that does not
        verify, LateAnswerError for one that answers another request (its invoke id is
        not the request's)."""
        if apdu and apdu[0] == xdlms.EXCEPTION_RESPONSE:
            response = xdlms.decode(apdu)
            raise MeterServiceError(f"the meter refused the request: {response}")
        plain = self._open(apdu, None)
        response = xdlms.decode(plain)
        if isinstance(response, xdlms.Request):
            raise MeterServiceError("the meter sent a request, not a response")
        if (
            not isinstance(response, xdlms.ExceptionResponse)  # which carries no invoke id
            and response.invoke_id != request.invoke_id
        ):
            raise LateAnswerError(
                f"an answer to another request (invoke id 0x{response.invoke_id:02x}, this "
                f"one's 0x{request.invoke_id:02x}): a late answer"
            )
        return response

    def _encrypt(self, plain: bytes, tag: CipheredTag) -> bytes:
        return security.encrypt(plain, tag, self._client_title, self._keys, self._counter.next())

    def _open(self, apdu: bytes, expected: CipheredTag | None) -> bytes:
        try:
            ciphered = security.parse(apdu)
            if expected is not None and ciphered.tag is not expected:
                raise MeterServiceError(f"expected {expected.name}, got {ciphered.tag.name}")
            plain = security.decrypt(ciphered, self._meter_title, self._keys)
        except CodecError as exc:
            raise MeterServiceError(f"response rejected: {exc}") from exc
        if ciphered.invocation_counter <= self._meter_counter:
            raise MeterServiceError("the meter's invocation counter went backwards: a replay")
        self._meter_counter = ciphered.invocation_counter
        return plain
