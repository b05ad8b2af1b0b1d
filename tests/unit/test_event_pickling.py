"""Events cross process pipes pickled: every kind comes back equal, with its own type."""

from __future__ import annotations

import pickle
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hes_sim.events import Event

KINDS = get_args(Event)


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
@given(data=st.data())
def test_every_event_kind_survives_a_pickle_round_trip(kind: type, data: st.DataObject) -> None:
    event = data.draw(st.builds(kind))
    back = pickle.loads(pickle.dumps(event))  # noqa: S301 - our own bytes
    assert type(back) is kind
    assert repr(back) == repr(event)  # every field; unlike ==, NaN matches NaN
