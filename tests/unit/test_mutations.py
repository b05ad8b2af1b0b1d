"""Valid frames with a few bytes changed, cut or inserted: the decoders raise CodecError or
decode, nothing else (random bytes alone rarely get past the first tag)."""

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from hes_sim.errors import CodecError
from hes_sim.protocols import acse, axdr, security, xdlms
from hes_sim.protocols.security import Keys
from tests.unit.test_acse import GURUX_AARQ
from tests.unit.test_security import GET_CLOCK, GLO_GET_CLOCK, KEYS, TITLE
from tests.unit.test_xdlms import REMOTE_DISCONNECT

RANGE_READ = bytes.fromhex(
    "c001c100070100630100ff0201010204020412000809060000010000ff0f02120000090c07ea0b1cff00000000"
    "feb600090c07ea0b1cff01000000feb6000100"
)


def mutations(frame: bytes):
    return st.one_of(
        st.tuples(st.integers(0, len(frame) - 1), st.integers(0, 255)).map(
            lambda p: frame[: p[0]] + bytes([p[1]]) + frame[p[0] + 1 :]
        ),
        st.integers(0, len(frame) - 1).map(lambda n: frame[:n]),
        st.tuples(st.integers(0, len(frame)), st.binary(min_size=1, max_size=6)).map(
            lambda p: frame[: p[0]] + p[1] + frame[p[0] :]
        ),
    )


def only_codec_errors(decode, data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode(data)


@given(st.one_of(mutations(GET_CLOCK), mutations(REMOTE_DISCONNECT), mutations(RANGE_READ)))
def test_xdlms(data: bytes):
    only_codec_errors(xdlms.decode, data)


@given(mutations(RANGE_READ[15:]))
def test_axdr(data: bytes):
    only_codec_errors(axdr.decode, data)


@given(mutations(GURUX_AARQ))
def test_acse(data: bytes):
    only_codec_errors(acse.decode_aarq, data)


@given(mutations(GLO_GET_CLOCK))
def test_security(data: bytes):
    only_codec_errors(lambda d: security.decrypt(security.parse(d), TITLE, KEYS), data)


def test_the_seeds_are_valid():
    assert xdlms.decode(RANGE_READ)
    assert security.decrypt(security.parse(GLO_GET_CLOCK), TITLE, KEYS) == GET_CLOCK
    assert isinstance(KEYS, Keys)
