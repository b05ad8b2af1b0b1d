import contextlib

import pytest
from gurux_dlms.enums import Authentication, InterfaceType, Security
from gurux_dlms.secure import GXDLMSSecureClient
from hypothesis import given
from hypothesis import strategies as st

from hes_sim.errors import CodecError
from hes_sim.protocols import acse, security, wrapper
from hes_sim.protocols.acse import (
    ApplicationContext,
    AssociationRequest,
    AssociationResponse,
    AssociationResult,
    Diagnostic,
    Mechanism,
)
from hes_sim.protocols.security import Keys

KEYS = Keys(bytes(range(16)), bytes(range(16, 32)))
TITLE = b"HES00001"
# what gurux-dlms's client sends for HLS GMAC, suite 0, invocation counter 5
GURUX_AARQ = bytes.fromhex(
    "605da109060760857405080103a60a040848455330303030318a0207808b0760857405080205"
    "ac128010edc90e6c66f320d2253440b29214078fbe230421211f3000000005cc2509a92dc467"
    "a364f140b2abe2b927216081b12fdada8789ab"
)
PUBLIC_AARQ = bytes.fromhex("601da109060760857405080101be10040e01000000065f1f0400401e5dffff")


def test_gurux_hls_aarq_decodes_and_encodes_back_byte_for_byte():
    request = acse.decode_aarq(GURUX_AARQ)
    assert request.application_context is ApplicationContext.LN_CIPHERED
    assert request.calling_title == TITLE
    assert request.mechanism is Mechanism.HIGH_GMAC
    assert request.calling_authentication_value == bytes.fromhex("edc90e6c66f320d2253440b29214078f")
    assert acse.encode_aarq(request) == GURUX_AARQ
    ciphered = security.parse(request.user_information)
    assert ciphered.invocation_counter == 5
    initiate = acse.decode_initiate_request(security.decrypt(ciphered, TITLE, KEYS))
    assert initiate.client_max_receive_pdu == 0xFFFF


def test_gurux_writes_what_we_read():
    client = GXDLMSSecureClient(True, 1, 1, Authentication.HIGH_GMAC, None, InterfaceType.WRAPPER)
    client.ciphering.security = Security.AUTHENTICATION_ENCRYPTION
    client.ciphering.systemTitle = bytearray(TITLE)
    client.ciphering.blockCipherKey = bytearray(KEYS.block_cipher_key)
    client.ciphering.authenticationKey = bytearray(KEYS.authentication_key)
    _header, apdu = wrapper.unwrap(bytes(client.aarqRequest()[0]))
    assert acse.encode_aarq(acse.decode_aarq(apdu)) == apdu


def test_public_aarq_vector_both_ways():
    request = acse.decode_aarq(PUBLIC_AARQ)
    assert request == AssociationRequest(
        ApplicationContext.LN, user_information=request.user_information
    )
    initiate = acse.decode_initiate_request(request.user_information)
    assert initiate.proposed_conformance == 0x401E5D
    assert acse.encode_initiate_request(initiate) == request.user_information
    assert acse.encode_aarq(request) == PUBLIC_AARQ


responses = st.builds(
    AssociationResponse,
    st.sampled_from(list(ApplicationContext)),
    st.sampled_from(list(AssociationResult)),
    st.sampled_from(list(Diagnostic)),
    st.none() | st.binary(min_size=8, max_size=8),
    st.sampled_from(list(Mechanism)),
    st.none() | st.binary(min_size=1, max_size=64),
    st.binary(max_size=200),
)


@given(responses)
def test_aare_roundtrip(response: AssociationResponse):
    assert acse.decode_aare(acse.encode_aare(response)) == response


@given(st.integers(0, 0xFFFFFF), st.integers(0, 0xFFFF))
def test_initiate_roundtrip(conformance: int, pdu: int):
    request = acse.InitiateRequest(conformance, pdu)
    assert acse.decode_initiate_request(acse.encode_initiate_request(request)) == request
    response = acse.InitiateResponse(conformance, pdu)
    assert acse.decode_initiate_response(acse.encode_initiate_response(response)) == response


@given(st.binary(max_size=120))
def test_arbitrary_bytes_raise_only_codec_error(raw: bytes):
    for decode in (acse.decode_aarq, acse.decode_aare, acse.decode_initiate_request):
        with contextlib.suppress(CodecError):
            decode(raw)


@pytest.mark.parametrize("cut", [1, 5, 20, 60])
def test_truncated_aarq_raises_codec_error(cut: int):
    with pytest.raises(CodecError):
        acse.decode_aarq(GURUX_AARQ[:-cut])
