import contextlib
import hashlib
import hmac

import pytest
from gurux_dlms import GXByteBuffer
from gurux_dlms.AesGcmParameter import AesGcmParameter
from gurux_dlms.enums import Security
from gurux_dlms.GXDLMSChippering import GXDLMSChippering
from gurux_dlms.GXDLMSSettings import GXDLMSSettings
from hypothesis import given
from hypothesis import strategies as st

from hes_sim.errors import CodecError
from hes_sim.protocols import security
from hes_sim.protocols.security import CipheredTag, Keys

KEYS = Keys(bytes(range(16)), bytes(range(16, 32)))
TITLE = security.system_title("HSM", 1)
GET_CLOCK = bytes.fromhex("c001c1000800000100ff0200")  # GET-Request-Normal, clock, time
# the same request as glo-get-request, invocation counter 5 (gurux gives the same bytes)
GLO_GET_CLOCK = bytes.fromhex(
    "c8 1d"  # glo-get-request, 29 bytes
    "30 00000005"  # security control: suite 0, authenticated + encrypted; counter 5
    "113662578db79b5f2f952dc7"  # ciphertext of the 12-byte request
    "e5b1859e93ce65c40179f03e"  # GCM tag, 12 bytes
)


def gurux_encrypt(plain: bytes, tag: int, counter: int) -> bytes:
    p = AesGcmParameter(tag, TITLE, KEYS.block_cipher_key, KEYS.authentication_key)
    p.security = Security.AUTHENTICATION_ENCRYPTION
    p.invocationCounter = counter
    return bytes(GXDLMSChippering.encryptAesGcm(p, plain))


def gurux_decrypt(apdu: bytes) -> bytes:
    p = AesGcmParameter(0, TITLE, KEYS.block_cipher_key, KEYS.authentication_key)
    return bytes(GXDLMSChippering.decryptAesGcm(GXDLMSSettings(True, None), p, GXByteBuffer(apdu)))


def test_vector_both_ways():
    assert security.encrypt(GET_CLOCK, CipheredTag.GLO_GET_REQUEST, TITLE, KEYS, 5) == GLO_GET_CLOCK
    parsed = security.parse(GLO_GET_CLOCK)
    assert (parsed.tag, parsed.invocation_counter) == (CipheredTag.GLO_GET_REQUEST, 5)
    assert security.decrypt(parsed, TITLE, KEYS) == GET_CLOCK


def test_encrypt_matches_gurux_byte_for_byte():
    assert security.encrypt(GET_CLOCK, CipheredTag.GLO_GET_REQUEST, TITLE, KEYS, 5) == (
        gurux_encrypt(GET_CLOCK, 0xC8, 5)
    )


def test_general_glo_ciphering_carries_the_system_title_like_gurux():
    ours = security.encrypt(GET_CLOCK, CipheredTag.GENERAL_GLO_CIPHERING, TITLE, KEYS, 9)
    assert ours == gurux_encrypt(GET_CLOCK, 0xDB, 9)
    assert ours[1:10] == b"\x08" + TITLE
    parsed = security.parse(ours)
    assert (parsed.system_title, parsed.invocation_counter) == (TITLE, 9)


def test_gurux_deciphers_ours_and_we_decipher_gurux():
    ours = security.encrypt(GET_CLOCK, CipheredTag.GLO_GET_REQUEST, TITLE, KEYS, 77)
    assert gurux_decrypt(ours) == GET_CLOCK
    theirs = gurux_encrypt(GET_CLOCK, 0xC8, 78)
    assert security.decrypt(security.parse(theirs), TITLE, KEYS) == GET_CLOCK


@given(st.binary(max_size=600), st.integers(0, 0xFFFF_FFFF), st.sampled_from(list(CipheredTag)))
def test_roundtrip(plain: bytes, counter: int, tag: CipheredTag):
    apdu = security.encrypt(plain, tag, TITLE, KEYS, counter)
    parsed = security.parse(apdu)
    assert parsed.invocation_counter == counter
    assert security.decrypt(parsed, TITLE, KEYS) == plain


@pytest.mark.parametrize("position", [0, 5, 10, -1])
def test_a_flipped_bit_anywhere_in_the_body_fails_authentication(position: int):
    apdu = bytearray(security.encrypt(GET_CLOCK, CipheredTag.GLO_GET_REQUEST, TITLE, KEYS, 5))
    body_start = 2 + 5  # tag, length, security control, counter
    index = body_start + position if position >= 0 else len(apdu) + position
    apdu[index] ^= 0x01
    with pytest.raises(CodecError) as caught:
        security.decrypt(security.parse(bytes(apdu)), TITLE, KEYS)
    assert caught.value.reason == "auth_failed"


def test_wrong_keys_or_title_fail_authentication():
    parsed = security.parse(
        security.encrypt(GET_CLOCK, CipheredTag.GLO_GET_REQUEST, TITLE, KEYS, 5)
    )
    other = security.derive_keys(b"another fleet", "SP0000001")
    for title, keys in ((TITLE, other), (security.system_title("HSM", 2), KEYS)):
        with pytest.raises(CodecError, match="auth_failed"):
            security.decrypt(parsed, title, keys)


def test_counter_is_authenticated():
    apdu = bytearray(security.encrypt(GET_CLOCK, CipheredTag.GLO_GET_REQUEST, TITLE, KEYS, 5))
    apdu[6] = 6  # claim a newer counter to pass a replay check
    with pytest.raises(CodecError, match="auth_failed"):
        security.decrypt(security.parse(bytes(apdu)), TITLE, KEYS)


def test_derived_keys_differ_per_meter_and_secret_and_never_print():
    a = security.derive_keys(b"secret", "SP0000001")
    assert a == security.derive_keys(b"secret", "SP0000001")
    assert a != security.derive_keys(b"secret", "SP0000002")
    assert a != security.derive_keys(b"Secret", "SP0000001")
    assert a.block_cipher_key != a.authentication_key
    assert a.block_cipher_key.hex() not in repr(a)
    assert "redacted" in repr(a)


@pytest.mark.parametrize(
    "apdu",
    [
        b"",
        b"\x00",
        b"\xc8",
        b"\xc8\x05\x30\x00\x00\x00\x01",
        b"\xc8\x20" + bytes(10),
        bytes.fromhex("c81d20") + bytes(28),
        b"\xdb\x07" + bytes(40),
        b"\xc8\x83" + bytes(40),
    ],
)
def test_malformed_ciphered_apdus_raise_codec_error(apdu: bytes):
    with pytest.raises(CodecError):
        security.parse(apdu)


@given(st.binary(max_size=80))
def test_arbitrary_bytes_raise_only_codec_error(data: bytes):
    with contextlib.suppress(CodecError):
        security.decrypt(security.parse(data), TITLE, KEYS)


@given(st.binary(max_size=300), st.integers(0, 0xFFFF_FFFF))
def test_gurux_and_we_agree_on_any_plaintext_and_counter(plain: bytes, counter: int):
    ours = security.encrypt(plain, CipheredTag.GLO_GET_REQUEST, TITLE, KEYS, counter)
    assert ours == gurux_encrypt(plain, 0xC8, counter)
    assert gurux_decrypt(ours) == plain
    assert security.decrypt(security.parse(ours), TITLE, KEYS) == plain


@given(st.binary(max_size=32), st.integers(0, 0xFFFF_FFFF))
def test_gmac_answer_is_gurux_authentication_only_tag(challenge: bytes, counter: int):
    # HLS GMAC is suite 0 with authentication only, over the challenge: gurux ends such an
    # APDU with the same 12-byte tag
    p = AesGcmParameter(0xC8, TITLE, KEYS.block_cipher_key, KEYS.authentication_key)
    p.security = Security.AUTHENTICATION
    p.invocationCounter = counter
    theirs = bytes(GXDLMSChippering.encryptAesGcm(p, challenge))
    answer = security.gmac_answer(TITLE, KEYS, counter, challenge)
    assert answer == bytes([0x10]) + counter.to_bytes(4, "big") + theirs[-security.TAG_SIZE :]
    assert security.check_gmac_answer(answer, TITLE, KEYS, challenge) == counter


def test_keys_used_in_turn_each_cipher_with_their_own():
    # AESGCM objects are kept per key; taking turns must never mix them up
    others = [security.derive_keys(b"fleet secret", f"SP{n:07d}") for n in range(3)]
    apdus = [
        security.encrypt(GET_CLOCK, CipheredTag.GLO_GET_REQUEST, TITLE, keys, 5)
        for keys in (KEYS, *others, KEYS)
    ]
    assert apdus[0] == apdus[-1] == GLO_GET_CLOCK
    assert len(set(apdus)) == 4
    for apdu, keys in zip(apdus, (KEYS, *others, KEYS), strict=True):
        assert security.decrypt(security.parse(apdu), TITLE, keys) == GET_CLOCK


@pytest.mark.parametrize("size", [0, 1, security.TAG_SIZE - 1])
def test_a_payload_shorter_than_a_tag_fails_authentication(size: int):
    ciphered = security.Ciphered(
        CipheredTag.GLO_GET_REQUEST, None, security.SECURITY_AUTHENTICATED_ENCRYPTED, 5, bytes(size)
    )
    with pytest.raises(CodecError, match="auth_failed"):
        security.decrypt(ciphered, TITLE, KEYS)


# the APDU tag is not authenticated (it only names the service), everything after it is
@given(st.integers(8, len(GLO_GET_CLOCK) * 8 - 1))
def test_any_flipped_bit_after_the_tag_is_refused(bit: int):
    apdu = bytearray(GLO_GET_CLOCK)
    apdu[bit // 8] ^= 0x80 >> bit % 8
    with pytest.raises(CodecError):
        security.decrypt(security.parse(bytes(apdu)), TITLE, KEYS)


@given(st.binary(min_size=1, max_size=64), st.lists(st.text(max_size=20), min_size=1, max_size=5))
def test_a_derivation_kept_for_a_secret_gives_each_meter_the_keys_of_the_definition(
    secret: bytes, meter_ids: list[str]
):
    kept = security.KeyDerivation(secret)
    for meter_id in meter_ids:  # several meters in turn: nothing of one reaches the next
        name = meter_id.encode()
        expected = security.Keys(
            hmac.new(secret, b"dlms-guek:" + name, hashlib.sha256).digest()[:16],
            hmac.new(secret, b"dlms-gak:" + name, hashlib.sha256).digest()[:16],
        )
        assert kept.keys_for(meter_id) == expected
        assert security.derive_keys(secret, meter_id) == expected
