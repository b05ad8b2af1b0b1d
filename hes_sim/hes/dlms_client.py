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
INVOKE_ID = 0xC1  # priority high, confirmed, invoke id 1


class AssociationError(HesSimError):
    """The meter refused the association or failed HLS."""


class MeterServiceError(HesSimError):
    """The meter answered with an exception-response or an APDU that does not verify."""


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
        self.associated = False

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
        return self.protect(xdlms.ActionRequest(INVOKE_ID, method, axdr.octets(answer)))

    def on_hls_reply(self, apdu: bytes) -> None:
        response = self.unprotect(apdu)
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

    def unprotect(self, apdu: bytes) -> xdlms.Response:
        if apdu and apdu[0] == xdlms.EXCEPTION_RESPONSE:
            response = xdlms.decode(apdu)
            raise MeterServiceError(f"the meter refused the request: {response}")
        plain = self._open(apdu, None)
        response = xdlms.decode(plain)
        if isinstance(response, xdlms.Request):
            raise MeterServiceError("the meter sent a request, not a response")
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
