"""Head-end system simulator for 4G smart meters speaking DLMS/COSEM over MQTT."""

__version__ = "0.1.0"
