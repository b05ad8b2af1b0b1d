"""Where an MQTT broker is: parsed from ``mqtt://host:port``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORT = 1883


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme != "mqtt":
            raise ValueError(f"broker URL {url!r}: only mqtt:// is supported (TLS comes later)")
        if not parts.hostname:
            raise ValueError(f"broker URL {url!r} has no host")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError as exc:
            raise ValueError(f"broker URL {url!r} has a bad port") from exc
        return cls(parts.hostname, port)

    def __str__(self) -> str:
        return f"mqtt://{self.host}:{self.port}"
