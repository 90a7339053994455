"""harness.services.http1_client at the edges of HTTP/1.1, against aiohttp where aiohttp answers.

Each scripted server answers every request with fixed bytes and then does one thing (keep the
connection, close it, reset it). A case runs on both loops the harness uses (asyncio's and
uvloop's: they deliver a peer's close at different moments) and, where a call fails, must fail
with aiohttp's exception type and message (``RestClient``'s callers and the spans' ``error.type``
depend on them).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any, Awaitable, Callable

import aiohttp
import pytest
import uvloop
from yarl import URL

from harness.services.http1_client import Http1Client

LOOPS = [pytest.param(asyncio.new_event_loop, id="asyncio"), pytest.param(uvloop.new_event_loop, id="uvloop")]


def _run(loop_factory: Callable[[], asyncio.AbstractEventLoop], coro: Awaitable[Any]) -> Any:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


class Scripted:
    """Answers each request with ``answer`` then ``then``: keep | close | reset (RST) | hold."""

    def __init__(self, answer: bytes, then: str = "keep", delay: float = 0.0) -> None:
        self.answer, self.then, self.delay = answer, then, delay
        self.connections = 0
        self.eofs = 0  # connections the client closed

    async def start(self) -> URL:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=2 ** 24)
        return URL(f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/x")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.eofs += 1
                    return
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":", 1)[1]))
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self.then == "reset":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                writer.write(self.answer)
                await writer.drain()
                if self.then == "close":
                    writer.close()
                    return
        except asyncio.CancelledError:
            return
        finally:
            writer.close()

    def stop(self) -> None:
        self.server.close()


async def _aiohttp(method: str, url: URL, **kw: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit_per_host=kw.pop("limit", 256))) as s:
        async with s.request(method, url, data=kw.get("body")) as r:
            return r.status, list(r.headers.items()), await r.read()


async def _own(method: str, url: URL, **kw: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    client = Http1Client()
    try:
        status, headers, body = await client.request(method, url, body=kw.get("body"))
        return status, list(headers.items()), body
    finally:
        client.close()


async def _both(answer: bytes, then: str, method: str = "GET") -> list[Any]:
    """What aiohttp and the small client each make of one answer: (status, headers, body) or
    (exception type, message)."""
    out = []
    for call in (_aiohttp, _own):
        server = Scripted(answer, then)
        url = await server.start()
        try:
            out.append(await call(method, url))
        except aiohttp.ClientError as exc:
            out.append((type(exc), str(exc)))
        finally:
            server.stop()
    return out


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_bytes_after_a_complete_answer_are_not_part_of_it(loop_factory: Any) -> None:
    extra = b"HTTP/1.1 500 Oops\r\nContent-Length: 3\r\nX-Extra: 1\r\n\r\nbad"
    aio, own = _run(loop_factory, _both(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + extra, "keep"))
    assert own == aio == (200, [("Content-Length", "2")], b"ok")

    async def next_request_on_a_new_connection() -> int:
        server = Scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + extra, "keep")
        url = await server.start()
        client = Http1Client()
        try:
            for _ in range(2):
                assert (await client.request("GET", url))[0] == 200
            return server.connections
        finally:
            client.close()
            server.stop()

    assert _run(loop_factory, next_request_on_a_new_connection()) == 2


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_chunked_trailers_are_not_answer_headers(loop_factory: Any) -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Trailer: t\r\n\r\n"
    aio, own = _run(loop_factory, _both(answer, "keep"))
    assert own == aio == (200, [("Transfer-Encoding", "chunked")], b"ok")


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("answer", [
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok", id="content-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n", id="chunked"),
])
def test_a_body_cut_short_is_aiohttps_payload_error(loop_factory: Any, answer: bytes) -> None:
    aio, own = _run(loop_factory, _both(answer, "close"))
    assert aio[0] is aiohttp.ClientPayloadError
    assert own == aio


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_an_undecodable_gzip_body_is_aiohttps_payload_error(loop_factory: Any) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc"
    aio, own = _run(loop_factory, _both(answer, "keep"))
    assert aio[0] is aiohttp.ClientPayloadError
    assert own == aio


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_a_reset_connection_is_aiohttps_os_error(loop_factory: Any) -> None:
    aio, own = _run(loop_factory, _both(b"", "reset", method="POST"))
    assert aio[0] is aiohttp.ClientOSError
    assert own == aio


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_server_closing_after_each_answer_with_requests_waiting(loop_factory: Any, method: str) -> None:
    """The server says keep-alive but closes after each answer; one connection allowed, so each
    answer's connection would go straight to a waiting request: none may be sent on it (aiohttp
    answers all of them, POSTs too)."""

    async def go() -> list[int]:
        server = Scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "close", delay=0.01)
        url = await server.start()
        client = Http1Client(limit_per_host=1)
        try:
            results = await asyncio.gather(*(client.request(method, url) for _ in range(6)))
            return [status for status, _, _ in results]
        finally:
            client.close()
            server.stop()

    assert _run(loop_factory, go()) == [200] * 6


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_close_with_a_request_in_flight_closes_its_connection(loop_factory: Any) -> None:
    async def go() -> tuple[int, int]:
        server = Scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "keep", delay=0.1)
        url = await server.start()
        client = Http1Client()
        try:
            task = asyncio.ensure_future(client.request("GET", url))
            await asyncio.sleep(0.03)
            client.close()
            status = (await task)[0]
            for _ in range(100):  # the connection it answered on is closed, not kept
                if server.eofs:
                    break
                await asyncio.sleep(0.02)
            return status, server.eofs
        finally:
            server.stop()

    assert _run(loop_factory, go()) == (200, 1)


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_megabyte_bodies_both_ways(loop_factory: Any) -> None:
    big = bytes(range(256)) * (6 * 4096)  # 6 MiB

    async def go() -> list[Any]:
        server = Scripted(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big) + big, "keep")
        url = await server.start()
        try:
            return [await _own("POST", url, body=big), await _own("GET", url)]
        finally:
            server.stop()

    for status, _, body in _run(loop_factory, go()):
        assert status == 200 and body == big


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_no_place_leaks_when_waiters_are_cancelled_or_connects_fail(loop_factory: Any) -> None:
    async def go() -> None:
        server = Scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "keep", delay=0.05)
        url = await server.start()
        client = Http1Client(limit_per_host=2)
        try:
            tasks = [asyncio.ensure_future(client.request("GET", url)) for _ in range(8)]
            await asyncio.sleep(0.01)  # two in flight, six waiting for a connection
            for task in tasks[2:5]:
                task.cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            assert [d[0] for d in done[:2] + done[5:]] == [200] * 5
            assert all(isinstance(d, asyncio.CancelledError) for d in done[2:5])
            pool = next(iter(client._pools.values()))
            assert pool.open == 2 and len(pool.idle) == 2 and server.connections == 2
            # cancelled while connecting: the place is given back
            client.close()
            task = asyncio.ensure_future(client.request("GET", url))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            pool = next(iter(client._pools.values()))
            await asyncio.sleep(0.05)
            assert pool.open == 0
        finally:
            client.close()
            server.stop()
        # connects refused, more times than there are places
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            refused = URL(f"http://127.0.0.1:{s.getsockname()[1]}/x")
            for _ in range(5):
                with pytest.raises(aiohttp.ClientConnectorError):
                    await client.request("GET", refused)
            assert client._pools[("127.0.0.1", refused.port)].open == 0

    _run(loop_factory, go())


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_cancelled_once_connected_closes_the_new_connection(loop_factory: Any) -> None:
    """A cancellation (the caller's timeout) can land just after the socket connected, before
    the pool hands the connection out (asyncio.wait_for lets it through then): that connection
    must be closed, not left open with its place given back."""

    async def go() -> tuple[int, int]:
        server = Scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "keep")
        url = await server.start()
        client = Http1Client(limit_per_host=1)
        loop = asyncio.get_running_loop()
        real = loop.create_connection

        async def connected_then_cancelled(*args: Any, **kw: Any) -> Any:
            await real(*args, **kw)
            raise asyncio.CancelledError

        loop.create_connection = connected_then_cancelled  # type: ignore[method-assign]
        try:
            with pytest.raises(asyncio.CancelledError):
                await client.request("GET", url)
            for _ in range(100):
                if server.eofs:
                    break
                await asyncio.sleep(0.02)
            return next(iter(client._pools.values())).open, server.eofs
        finally:
            client.close()
            server.stop()

    assert _run(loop_factory, go()) == (0, 1)


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_the_callers_timeout_ends_a_wait_for_a_connection(loop_factory: Any) -> None:
    """One connection, held by a request the server never answers: the next request waits for
    a connection, and RestClient's own timeout still ends both, leaving no place taken."""
    from harness.latency import LatencyModel, load_profile
    from harness.services.rest import RestClient
    from opentelemetry import trace

    async def go() -> tuple[list[str], int]:
        server = Scripted(b"", "keep", delay=30)  # reads each request, never answers
        url = await server.start()
        rest = RestClient(trace.NoOpTracer(), LatencyModel(load_profile("zero"), seed=1),
                          user_agent="t/1", timeout=0.3)
        rest._http1.limit_per_host = 1  # type: ignore[union-attr]
        try:
            results = await asyncio.gather(*(rest.request("GET", str(url), template="/x") for _ in range(2)),
                                           return_exceptions=True)
            await asyncio.sleep(0.05)
            return [type(r).__name__ for r in results], next(iter(rest._http1._pools.values())).open  # type: ignore[union-attr]
        finally:
            await rest.close()
            server.stop()

    assert _run(loop_factory, go()) == (["TimeoutError", "TimeoutError"], 0)


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_an_idle_connection_past_keepalive_is_not_reused(loop_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.services.http1_client as http1_client

    monkeypatch.setattr(http1_client, "KEEPALIVE_S", 0.05)

    async def go() -> tuple[int, int]:
        server = Scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "keep")
        url = await server.start()
        client = Http1Client()
        try:
            await client.request("GET", url)
            await asyncio.sleep(0.1)
            await client.request("GET", url)
            for _ in range(100):
                if server.eofs:
                    break
                await asyncio.sleep(0.02)
            return server.connections, server.eofs  # a second connection; the first one closed
        finally:
            client.close()
            server.stop()

    assert _run(loop_factory, go()) == (2, 1)


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_a_cancellation_as_the_connect_completes_is_not_lost(loop_factory: Any) -> None:
    """RestClient's timeout cancels a request once: one that lands as the connection is made
    must still end the request (Python 3.11's asyncio.wait_for returned the connection instead,
    and the request then waited on a server that never answers)."""

    async def go() -> bool:
        server = Scripted(b"", "keep", delay=30)  # never answers
        url = await server.start()
        client = Http1Client()
        loop = asyncio.get_running_loop()
        real = loop.create_connection
        task: asyncio.Task[Any] | None = None

        async def connected_as_cancelled(*args: Any, **kw: Any) -> Any:
            made = await real(*args, **kw)
            loop.call_soon(task.cancel)  # type: ignore[union-attr]
            return made

        loop.create_connection = connected_as_cancelled  # type: ignore[method-assign]
        try:
            task = asyncio.ensure_future(client.request("GET", url))
            await asyncio.wait({task}, timeout=3)
            ended = task.done()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return ended and task.cancelled()
        finally:
            client.close()
            server.stop()

    assert _run(loop_factory, go())


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_the_kernels_connect_timeout_is_a_connector_error_as_aiohttps(loop_factory: Any) -> None:
    """ETIMEDOUT from connect(2) is an OSError that Python makes a TimeoutError: aiohttp reports
    it as ClientConnectorError (its own sock_connect timeout, errno None, as ConnectionTimeoutError)."""

    async def go() -> list[Any]:
        out = []
        loop = asyncio.get_running_loop()

        async def timed_out(*args: Any, **kw: Any) -> Any:
            raise TimeoutError(110, "Connection timed out")

        loop.create_connection = timed_out  # type: ignore[method-assign]  (ours)
        loop.sock_connect = timed_out  # type: ignore[method-assign]  (aiohttp's, by aiohappyeyeballs)
        url = URL("http://127.0.0.1:9/x")
        for call in (_aiohttp, _own):
            with pytest.raises(aiohttp.ClientError) as info:
                await call("GET", url)
            out.append((type(info.value), str(info.value)))
        return out

    aio, own = _run(loop_factory, go())
    assert aio[0] is aiohttp.ClientConnectorError
    assert own == aio


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_the_connect_timeout_is_aiohttps_connection_timeout_error(loop_factory: Any) -> None:
    async def go() -> list[Any]:
        out = []
        loop = asyncio.get_running_loop()

        async def never(*args: Any, **kw: Any) -> Any:
            await asyncio.sleep(30)

        loop.create_connection = never  # type: ignore[method-assign]
        loop.sock_connect = never  # type: ignore[method-assign]
        url = URL("http://127.0.0.1:9/x")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_connect=0.1)) as session:
            with pytest.raises(aiohttp.ClientError) as info:
                await session.get(url)
            out.append((type(info.value), str(info.value)))
        client = Http1Client(connect_timeout=0.1)
        with pytest.raises(aiohttp.ClientError) as info:
            await client.request("GET", url)
        out.append((type(info.value), str(info.value)))
        assert client._pools[("127.0.0.1", 9)].open == 0
        return out

    aio, own = _run(loop_factory, go())
    assert aio[0] is aiohttp.ConnectionTimeoutError
    assert own == aio
