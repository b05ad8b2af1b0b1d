"""The virtual meter fleet: pure meter domain plus the asyncio/MQTT runtime."""
