"""gurux-dlms's own client, driven against our meter over any byte transport: the
independent DLMS peer of the tests (its server side is not used)."""

from __future__ import annotations

from collections.abc import Callable

from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData
from gurux_dlms.enums import Authentication, InterfaceType, Security
from gurux_dlms.secure import GXDLMSSecureClient

from hes_sim.protocols.security import Keys

Transport = Callable[[bytes], bytes]  # one request frame in, one reply frame out


def secure_client(keys: Keys, title: bytes, counter: int = 1, max_pdu: int = 1024) -> GXDLMSClient:
    client = GXDLMSSecureClient(True, 1, 1, Authentication.HIGH_GMAC, None, InterfaceType.WRAPPER)
    client.ciphering.security = Security.AUTHENTICATION_ENCRYPTION
    client.ciphering.systemTitle = bytearray(title)
    client.ciphering.blockCipherKey = bytearray(keys.block_cipher_key)
    client.ciphering.authenticationKey = bytearray(keys.authentication_key)
    client.ciphering.invocationCounter = counter
    client.maxReceivePDUSize = max_pdu
    return client


def public_client() -> GXDLMSClient:
    return GXDLMSClient(True, 16, 1, Authentication.NONE, None, InterfaceType.WRAPPER)


class GuruxSession:
    def __init__(self, client: GXDLMSClient, transport: Transport) -> None:
        self.client = client
        self.transport = transport
        self.exchanges = 0

    def request(self, frames) -> GXReplyData:
        reply = GXReplyData()
        for frame in frames or []:
            reply.clear()
            self._exchange(frame, reply)
            while reply.isMoreData():
                self._exchange(self.client.receiverReady(reply), reply)
        return reply

    def _exchange(self, frame, reply: GXReplyData) -> None:
        raw = self.transport(bytes(frame))
        self.exchanges += 1
        if not self.client.getData(GXByteBuffer(bytearray(raw)), reply):
            raise OSError("incomplete reply")

    def associate(self) -> None:
        reply = self.request(self.client.aarqRequest())
        self.client.parseAareResponse(reply.data)
        if self.client.isAuthenticationRequired:
            reply = self.request(self.client.getApplicationAssociationRequest())
            self.client.parseApplicationAssociationResponse(reply.data)

    def read(self, obj, attribute: int):
        reply = self.request(self.client.read(obj, attribute))
        if reply.error:
            return reply.error
        return self.client.updateValue(obj, attribute, reply.value)

    def release(self) -> None:
        frames = self.client.releaseRequest()
        if frames:
            self.request(frames)
