"""What each command type takes, checked when it is submitted (before anything is stored).

One frozen pydantic model per command type, refusing unknown fields. ``validate`` turns
the raw mapping of a request into the model or raises ``InvalidRequestError`` naming the
field; ``stored`` gives the canonical form that is written with the command, so that
what runs after a restart is exactly what was accepted.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hes_sim.hes.commands.lifecycle import CommandType
from hes_sim.hes.operations import InvalidRequestError

MAX_PROFILE_SPAN_S = 31 * 86_400.0  # a month of block load: ~3,000 entries, ~100 blocks
# the instants a profile read may name (simulated Unix seconds, 2000-01-01 to 2100-01-01
# UTC): a datetime, a COSEM date-time and every renderer can represent them all
EARLIEST_SIM_TIME = 946_684_800.0
LATEST_SIM_TIME = 4_102_444_800.0


class Parameters(BaseModel):
    # strict: "60" is not 60, and True is not 1, in a command that changes a meter
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NoParameters(Parameters):
    """disconnect, reconnect, time_sync and read_instantaneous take none."""


class ProfileName(StrEnum):
    BLOCK_LOAD = "block_load"
    # daily_load and billing join here with their readers (hes_sim.hes.profile_read)


SimTime = Annotated[  # simulated Unix seconds
    float, Field(ge=EARLIEST_SIM_TIME, le=LATEST_SIM_TIME, allow_inf_nan=False)
]


class ReadProfileParameters(Parameters):
    """A range of a profile's entries, both ends included (DLMS range access is inclusive:
    ``start == end`` reads the one entry stamped then)."""

    profile: Annotated[ProfileName, Field(strict=False)]  # the enum from its JSON string
    start: SimTime
    end: SimTime

    @model_validator(mode="after")
    def _a_bounded_range(self) -> Self:
        if self.start > self.end:
            raise ValueError(f"start ({self.start}) is after end ({self.end})")
        if self.end - self.start > MAX_PROFILE_SPAN_S:
            raise ValueError(
                f"end - start is {self.end - self.start:.0f} s, more than the "
                f"{MAX_PROFILE_SPAN_S:.0f} s one read may span"
            )
        return self


class PushSetupParameters(Parameters):
    """Attributes 5-7 of the block-load push setup; those left out are not touched."""

    randomisation_start_interval: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None  # s
    number_of_retries: Annotated[int, Field(ge=0, le=0xFF)] | None = None
    repetition_delay: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None  # s

    @model_validator(mode="after")
    def _at_least_one(self) -> Self:
        if not self.given():
            raise ValueError(
                "give at least one of randomisation_start_interval, number_of_retries,"
                " repetition_delay"
            )
        return self

    def given(self) -> dict[str, int]:
        return {name: value for name, value in self.model_dump().items() if value is not None}


MODELS: dict[CommandType, type[Parameters]] = {
    CommandType.DISCONNECT: NoParameters,
    CommandType.RECONNECT: NoParameters,
    CommandType.TIME_SYNC: NoParameters,
    CommandType.READ_INSTANTANEOUS: NoParameters,
    CommandType.READ_PROFILE: ReadProfileParameters,
    CommandType.PUSH_SETUP: PushSetupParameters,
}


def validate(kind: CommandType, raw: dict[str, object]) -> Parameters:
    """The parameters of a ``kind`` command; InvalidRequestError names what is wrong."""
    try:
        return MODELS[kind].model_validate(raw)
    except ValidationError as exc:
        raise InvalidRequestError(f"{kind} parameters: {_describe(exc)}") from exc


def stored(parameters: Parameters) -> dict[str, object]:
    """The canonical JSON-ready form kept with the command (fields not given left out)."""
    return parameters.model_dump(mode="json", exclude_none=True)


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)
