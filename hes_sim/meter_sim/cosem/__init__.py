"""The meter as a DLMS/COSEM server: an object model shared per meter kind, and the
association and request handling of one session. Pure: no I/O, time passed in."""
