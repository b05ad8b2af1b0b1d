"""The wire: pure codecs from bytes to typed values and back. No I/O, no asyncio.

Every malformed, partial or unexpected input raises :class:`hes_sim.errors.CodecError`.
"""
