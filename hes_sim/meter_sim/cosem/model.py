"""The COSEM object model: objects, their attributes and methods, as data.

One model is built per meter kind and shared by every meter of that kind; getters and
setters take the meter whose values they read or change, so nothing per meter lives in
the model (the memory of a large fleet is the meters' values only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from hes_sim.meter_sim.meter import VirtualMeter
from hes_sim.protocols.axdr import Data
from hes_sim.protocols.xdlms import DataAccessResult, Selection


class Level(Enum):
    """Who may use an attribute or method: any association, or a management (HLS) one."""

    PUBLIC = "public"
    MANAGEMENT = "management"


@dataclass(frozen=True, slots=True)
class Context:
    """What a getter, setter or method sees: the meter and the true simulated time."""

    meter: VirtualMeter
    now: float


Getter = Callable[[Context, Selection | None], Data]
Setter = Callable[[Context, Data], DataAccessResult]
Method = Callable[[Context, Data | None], tuple[DataAccessResult, Data | None]]


@dataclass(frozen=True, slots=True)
class Attribute:
    read: Getter
    read_level: Level = Level.MANAGEMENT
    write: Setter | None = None  # writable by management associations when set
    selective: bool = False  # accepts selective access


@dataclass(frozen=True, slots=True)
class MethodDef:
    invoke: Method
    level: Level = Level.MANAGEMENT


@dataclass(frozen=True, slots=True)
class CosemObject:
    class_id: int
    version: int
    obis: bytes
    name: str
    attributes: dict[int, Attribute]
    methods: dict[int, MethodDef] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ObjectModel:
    objects: dict[bytes, CosemObject]  # by logical name

    def find(self, obis: bytes) -> CosemObject | None:
        return self.objects.get(obis)


def obis(code: str) -> bytes:
    """``"1.0.99.1.0.255"`` -> the 6-byte logical name."""
    parts = [int(p) for p in code.split(".")]
    if len(parts) != 6 or not all(0 <= p <= 255 for p in parts):
        raise ValueError(f"{code!r} is not an OBIS code")
    return bytes(parts)
