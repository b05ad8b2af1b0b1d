import pytest
from hypothesis import given
from hypothesis import strategies as st

from hes_sim.errors import CodecError
from hes_sim.protocols import topics
from hes_sim.protocols.topics import Channel


def test_topic_scheme():
    assert topics.topic("SP0000001", Channel.UP) == "mtr/v1/SP0000001/up"
    assert topics.subscription(Channel.UP, shared=True) == "$share/hes/mtr/v1/+/up"
    assert topics.subscription(Channel.STATE) == "mtr/v1/+/state"


def test_parse_roundtrip():
    assert topics.parse(topics.topic("TP0000042", Channel.STATE)) == ("TP0000042", Channel.STATE)


@pytest.mark.parametrize(
    "name", ["mtr/v2/SP1/up", "mtr/v1/SP1", "mtr/v1/SP1/sideways", "mtr/v1/S P/up", "x"]
)
def test_bad_topics_raise_codec_error(name: str):
    with pytest.raises(CodecError):
        topics.parse(name)


def test_bad_meter_id_is_refused_when_building():
    with pytest.raises(ValueError, match="meter id"):
        topics.topic("a/b", Channel.UP)


@given(
    st.one_of(
        st.text(max_size=40),
        st.builds(
            lambda meter, channel: f"mtr/v1/{meter}/{channel}",
            st.text(max_size=70),
            st.sampled_from(["up", "down", "state", "UP", "up2", ""]),
        ),
    )
)
def test_the_one_pattern_reads_names_as_the_checks_do(name: str):
    """The head-end's one-regex reading of a topic name agrees with the part-by-part
    checks on every name: the same meter and channel, or a CodecError from both."""
    try:
        expected = topics._parse_or_refuse(name)
    except CodecError:
        with pytest.raises(CodecError):
            topics.parse(name)
    else:
        assert topics.parse(name) == expected
        assert topics.topic(*expected) == name
