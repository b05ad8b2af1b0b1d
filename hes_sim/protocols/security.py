"""DLMS security suite 0: AES-GCM-128, authenticated and encrypted (security control 0x30).

A ciphered APDU is ``tag [system-title] length SC IC ciphertext T`` where SC is the
security control byte, IC the 4-byte invocation counter, and T the GCM tag cut to 12
bytes. The IV is the sender's system title followed by IC; the additional authenticated
data is SC followed by the authentication key (DLMS Green Book 9.2.7.2). Service-specific
global ciphering (glo-get-request, …) carries no system title; general-glo-ciphering, used
for pushes, carries the sender's.

AES-GCM comes from the ``cryptography`` package: the byte-identical result of gurux's
own pure-Python AES is checked by the tests, at a hundredth of the cost. Its ``AESGCM``
object is built once per key (it holds the expanded key) and kept for the next APDU.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hes_sim.errors import CodecError
from hes_sim.protocols.axdr import decode_length, encode_length

SECURITY_AUTHENTICATED_ENCRYPTED = 0x30  # suite 0, authentication + encryption
SECURITY_AUTHENTICATED = 0x10  # suite 0, authentication only (HLS GMAC answers)
TAG_SIZE = 12
SYSTEM_TITLE_SIZE = 8
KEY_SIZE = 16


class CipheredTag(IntEnum):
    GLO_INITIATE_REQUEST = 0x21
    GLO_INITIATE_RESPONSE = 0x28
    GLO_GET_REQUEST = 0xC8
    GLO_SET_REQUEST = 0xC9
    GLO_EVENT_NOTIFICATION = 0xCA
    GLO_ACTION_REQUEST = 0xCB
    GLO_GET_RESPONSE = 0xCC
    GLO_SET_RESPONSE = 0xCD
    GLO_ACTION_RESPONSE = 0xCF
    GENERAL_GLO_CIPHERING = 0xDB


# the plain APDU tag each service-specific ciphered tag stands for
PLAIN_TAG = {
    CipheredTag.GLO_INITIATE_REQUEST: 0x01,
    CipheredTag.GLO_INITIATE_RESPONSE: 0x08,
    CipheredTag.GLO_GET_REQUEST: 0xC0,
    CipheredTag.GLO_SET_REQUEST: 0xC1,
    CipheredTag.GLO_EVENT_NOTIFICATION: 0xC2,
    CipheredTag.GLO_ACTION_REQUEST: 0xC3,
    CipheredTag.GLO_GET_RESPONSE: 0xC4,
    CipheredTag.GLO_SET_RESPONSE: 0xC5,
    CipheredTag.GLO_ACTION_RESPONSE: 0xC7,
}
CIPHERED_TAG = {plain: ciphered for ciphered, plain in PLAIN_TAG.items()}


@dataclass(frozen=True, slots=True)
class Keys:
    """One party's suite-0 keys. ``repr`` never shows them, so they cannot leak into logs."""

    block_cipher_key: bytes
    authentication_key: bytes

    def __post_init__(self) -> None:
        if len(self.block_cipher_key) != KEY_SIZE or len(self.authentication_key) != KEY_SIZE:
            raise ValueError("suite 0 keys are 16 bytes")

    def __repr__(self) -> str:
        return "Keys(<redacted>)"


# not frozen: a frozen dataclass's __init__ costs ~3 us against ~0.6 us, and the
# head-end builds one of these for every push it takes
@dataclass(slots=True)
class Ciphered:
    tag: CipheredTag
    system_title: bytes | None  # only general-glo-ciphering carries it
    security_control: int
    invocation_counter: int
    payload: bytes  # ciphertext followed by the 12-byte tag


def derive_keys(fleet_secret: bytes, meter_id: str) -> Keys:
    """Per-meter keys: HMAC-SHA256(fleet secret, label + meter id), first 16 bytes each.

    The labels keep the two keys independent; anyone with the fleet secret (the head-end)
    can derive every meter's keys, and no meter's keys reveal another's.
    """
    return KeyDerivation(fleet_secret).keys_for(meter_id)


class KeyDerivation:
    """:func:`derive_keys` for one fleet secret. The HMAC of the secret and each label is
    begun once and copied for every meter, a third of the cost of starting it afresh: a
    head-end derives the keys of every meter it hears from."""

    __slots__ = ("_gak", "_guek")

    def __init__(self, fleet_secret: bytes) -> None:
        self._guek = hmac.new(fleet_secret, b"dlms-guek:", hashlib.sha256)
        self._gak = hmac.new(fleet_secret, b"dlms-gak:", hashlib.sha256)

    def __repr__(self) -> str:
        return "KeyDerivation(<redacted>)"

    def keys_for(self, meter_id: str) -> Keys:
        name = meter_id.encode()
        guek, gak = self._guek.copy(), self._gak.copy()
        guek.update(name)
        gak.update(name)
        return Keys(guek.digest()[:KEY_SIZE], gak.digest()[:KEY_SIZE])


def system_title(manufacturer: str, serial: int) -> bytes:
    """8 bytes: a 3-letter manufacturer id and a 5-byte serial (DLMS Green Book 4.3.4)."""
    code = manufacturer.encode("ascii")
    if len(code) != 3 or not 0 <= serial < 2**40:
        raise ValueError(f"system title needs 3 letters and a 40-bit serial, got {manufacturer!r}")
    return code + serial.to_bytes(5, "big")


def encrypt(
    plain: bytes,
    tag: CipheredTag,
    sender_title: bytes,
    keys: Keys,
    invocation_counter: int,
) -> bytes:
    if len(sender_title) != SYSTEM_TITLE_SIZE:
        raise ValueError("a system title is 8 bytes")
    if not 0 <= invocation_counter <= 0xFFFF_FFFF:
        raise ValueError("invocation counter out of range")
    sc = SECURITY_AUTHENTICATED_ENCRYPTED
    sealed = _aead(keys.block_cipher_key).encrypt(
        _iv(sender_title, invocation_counter), plain, bytes([sc]) + keys.authentication_key
    )
    ciphertext_and_tag = sealed[: len(plain) + TAG_SIZE]  # the tag cut to TAG_SIZE
    body = bytes([sc]) + invocation_counter.to_bytes(4, "big") + ciphertext_and_tag
    title = b""
    if tag is CipheredTag.GENERAL_GLO_CIPHERING:
        title = encode_length(len(sender_title)) + sender_title
    return bytes([tag]) + title + encode_length(len(body)) + body


# by value: a dict lookup, where calling the enum costs a microsecond a push
_CIPHERED_TAGS = {int(tag): tag for tag in CipheredTag}


def parse(apdu: bytes) -> Ciphered:
    """Split a ciphered APDU into its parts, without deciphering."""
    if not apdu:
        raise CodecError("ciphered", "empty APDU")
    tag = _CIPHERED_TAGS.get(apdu[0])
    if tag is None:
        raise CodecError("ciphered", f"tag 0x{apdu[0]:02x} is not a ciphered APDU")
    position = 1
    title = None
    if tag is CipheredTag.GENERAL_GLO_CIPHERING:
        size, position = decode_length(apdu, position)
        title = apdu[position : position + size]
        if size != SYSTEM_TITLE_SIZE or len(title) != size:
            raise CodecError("ciphered", "bad system title")
        position += size
    size, position = decode_length(apdu, position)
    body = apdu[position:]
    if len(body) != size:
        raise CodecError("ciphered", f"length says {size} bytes, {len(body)} follow")
    if size < 5 + TAG_SIZE:
        raise CodecError("ciphered", "too short to hold a counter and a tag")
    if body[0] != SECURITY_AUTHENTICATED_ENCRYPTED:
        raise CodecError("security_policy", f"security control 0x{body[0]:02x} is not suite 0 A+E")
    return Ciphered(tag, title, body[0], int.from_bytes(body[1:5], "big"), body[5:])


def decrypt(ciphered: Ciphered, sender_title: bytes, keys: Keys) -> bytes:
    """The plain APDU, or CodecError("auth_failed") when the tag does not verify."""
    return open_sealed(
        ciphered.payload,
        sender_title,
        ciphered.invocation_counter,
        ciphered.security_control,
        keys,
    )


def open_sealed(
    sealed: bytes, sender_title: bytes, invocation_counter: int, security_control: int, keys: Keys
) -> bytes:
    """The plaintext of ``sealed`` (ciphertext, then the 12-byte tag), or
    CodecError("auth_failed") when the tag does not verify."""
    payload, tag = sealed[:-TAG_SIZE], sealed[-TAG_SIZE:]
    aead = _aead(keys.block_cipher_key)
    iv = _iv(sender_title, invocation_counter)
    # AESGCM.decrypt only checks full 16-byte tags. GCM ciphers by XOR with a keystream
    # fixed by key and IV, so sealing the ciphertext gives back the plaintext, and sealing
    # that plaintext gives the tag the sender computed; its first 12 bytes must match.
    # Nothing of the plaintext leaves this function unless they do.
    plain = aead.encrypt(iv, payload, None)[: len(payload)]
    aad = bytes([security_control]) + keys.authentication_key
    expected = aead.encrypt(iv, plain, aad)[len(plain) : len(plain) + TAG_SIZE]
    if not hmac.compare_digest(expected, tag):
        raise CodecError("auth_failed", "GCM tag does not verify: forged or tampered")
    return plain


def gmac_answer(title: bytes, keys: Keys, invocation_counter: int, challenge: bytes) -> bytes:
    """HLS mechanism 5: f(challenge) = SC || IC || GMAC(SC || AK || challenge), the GMAC
    keyed with the block cipher key and the answering party's title and counter."""
    sc = SECURITY_AUTHENTICATED
    # GMAC is AES-GCM over nothing, the message all in the additional data
    tag = _aead(keys.block_cipher_key).encrypt(
        _iv(title, invocation_counter), b"", bytes([sc]) + keys.authentication_key + challenge
    )
    return bytes([sc]) + invocation_counter.to_bytes(4, "big") + tag[:TAG_SIZE]


def check_gmac_answer(answer: bytes, title: bytes, keys: Keys, challenge: bytes) -> int:
    """The counter of a genuine f(challenge); CodecError("auth_failed") otherwise."""
    if len(answer) != 5 + TAG_SIZE or answer[0] != SECURITY_AUTHENTICATED:
        raise CodecError("auth_failed", "not an HLS GMAC answer")
    counter = int.from_bytes(answer[1:5], "big")
    expected = gmac_answer(title, keys, counter, challenge)
    if not hmac.compare_digest(expected, answer):
        raise CodecError("auth_failed", "HLS GMAC answer does not verify")
    return counter


# A session's APDUs, and a meter's pushes in a row, reuse one key. The bound keeps memory
# flat (an AESGCM holds about 2.4 KB of OpenSSL state) when a head-end sees a whole fleet;
# a miss costs what building it per call would.
@lru_cache(maxsize=256)
def _aead(block_cipher_key: bytes) -> AESGCM:
    return AESGCM(block_cipher_key)


def _iv(title: bytes, invocation_counter: int) -> bytes:
    return title + invocation_counter.to_bytes(4, "big")
