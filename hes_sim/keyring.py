"""Who holds which keys: every meter's suite-0 keys and system title, from one fleet secret.

The head-end and the fleet share the fleet secret (``HES_FLEET_SECRET``, or a random one
per run); each derives a meter's keys when it needs them. Keys are never logged or
reported; ``Keys.__repr__`` redacts them.
"""

from __future__ import annotations

import hashlib

from hes_sim.protocols import security
from hes_sim.protocols.security import Keys

METER_MANUFACTURER = "HSM"  # the simulator's 3-letter manufacturer id in system titles
HES_SYSTEM_TITLE = security.system_title("HES", 1)


class FleetKeyring:
    def __init__(self, fleet_secret: bytes) -> None:
        if len(fleet_secret) < 16:
            raise ValueError("the fleet secret needs at least 16 bytes")
        self._secret = fleet_secret
        self._derivation = security.KeyDerivation(fleet_secret)

    def __repr__(self) -> str:
        return "FleetKeyring(<redacted>)"

    @property
    def secret(self) -> bytes:
        """For this program's own processes (fleet shards, ingest workers), which derive
        the same keys; never for a log or a report."""
        return self._secret

    def keys_for(self, meter_id: str) -> Keys:
        return self._derivation.keys_for(meter_id)

    @staticmethod
    def system_title_for(meter_id: str) -> bytes:
        """``HSM`` and 5 bytes of a hash of the meter id: unique per meter, stable per id."""
        serial = int.from_bytes(hashlib.blake2b(meter_id.encode(), digest_size=5).digest(), "big")
        return security.system_title(METER_MANUFACTURER, serial)
