"""Durations as scenario and policy files write them: a number of seconds, or a string
such as ``"90s"``, ``"15m"``, ``"4h"``, ``"1d"``, ``"1h30m"``. Pure."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, Field

_SIMPLE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_COMPOUND = re.compile(r"^(?:\s*\d+(?:\.\d+)?\s*[dhms])+\s*$")  # 1h30m, 2m30s
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_UNIT_SECONDS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def coerce_duration(value: object) -> object:
    """A pydantic before-validator: strings become seconds, anything else passes on."""
    if isinstance(value, str):
        match = _SIMPLE.match(value)
        if match is not None:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        if _COMPOUND.match(value):
            return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(value))
        raise ValueError(f"{value!r} is not a duration such as 900, '15m', '4h', '1h30m' or '1d'")
    return value


def parse_duration(value: str) -> float:
    """``"90"``, ``"15m"``, ``"4h"``, ``"1h30m"``, ``"1d"`` -> seconds."""
    seconds = coerce_duration(value)
    if not isinstance(seconds, float):  # pragma: no cover - a str always parses to float
        raise TypeError(value)
    return seconds


# simulated seconds in scenario and policy files
Seconds = Annotated[float, BeforeValidator(coerce_duration), Field(ge=0, allow_inf_nan=False)]
