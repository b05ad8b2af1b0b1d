"""The project's exceptions: one root, a few meaningful branches."""


class HesSimError(Exception):
    """Root of every error this project raises on purpose."""


class CodecError(HesSimError):
    """Bytes that are not a valid frame, APDU or value; raised by ``protocols`` only.

    ``reason`` is a short, stable label (used as a metric label), the message says more.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class ScenarioError(HesSimError):
    """A scenario or configuration file that cannot be used; the message names the field."""


class BrokerError(HesSimError):
    """The MQTT broker could not be started or reached."""


class StoreError(HesSimError):
    """The read store could not be opened or written."""
