import asyncio

from prometheus_client import CollectorRegistry, Counter

from hes_sim.http_metrics import MetricsServer


async def request(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


async def test_serves_metrics_health_and_errors():
    registry = CollectorRegistry()
    Counter("things", "Things seen", registry=registry).inc(3)
    healthy = [True]
    async with MetricsServer(registry, "127.0.0.1", 0, healthy=lambda: healthy[0]) as server:
        metrics = await request(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert metrics.startswith(b"HTTP/1.1 200 OK")
        assert b"things_total 3.0" in metrics
        assert (await request(server.port, b"GET /healthz HTTP/1.1\r\n\r\n")).startswith(
            b"HTTP/1.1 200"
        )
        healthy[0] = False
        assert (await request(server.port, b"GET /healthz HTTP/1.1\r\n\r\n")).startswith(
            b"HTTP/1.1 503"
        )
        assert (await request(server.port, b"GET /nope HTTP/1.1\r\n\r\n")).startswith(
            b"HTTP/1.1 404"
        )
        assert (await request(server.port, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(
            b"HTTP/1.1 405"
        )
        assert (await request(server.port, b"\x00\xff garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
        # the server is still there after all that
        assert b"things_total" in await request(server.port, b"GET /metrics HTTP/1.1\r\n\r\n")
