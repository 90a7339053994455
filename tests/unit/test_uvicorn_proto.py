"""OneWriteProtocol: the same bytes as uvicorn's own protocol, a plain response in one write.

uvicorn's protocol and OneWriteProtocol are fed the same requests from memory (keep-alive, HEAD,
POST with a body, a streamed body, a 404, an app that fails after starting, ``Connection: close``)
behind the harness's server-span middleware; what reaches the socket is compared byte for byte,
and the number of writes counted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from opentelemetry import trace
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from harness.services.http import handler, json_body, make_app, make_server, nova_error
from harness.services.uvicorn_proto import HeadHoldingTransport, OneWriteProtocol, head_holder


class _Socket:
    """The real transport under the protocol: what was written, write by write, and all of it
    as each request's answer was done (a kept head must not wait for the next request)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.answers: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8774), "peername": ("127.0.0.1", 40000)}.get(name, default)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def _app():
    async def show(request: Request):
        return {"id": request.path_params["id"]}, 200

    async def create(request: Request):
        return {"got": await json_body(request)}, 202

    async def stream(request: Request):
        async def parts():
            yield b"a"
            await asyncio.sleep(0)
            yield b"bc"
        return StreamingResponse(parts(), media_type="text/plain")

    async def late_bug(request: Request):
        return _LateBug()

    routes = [Route("/s/{id}", handler(show), methods=["GET"]), Route("/s", handler(create), methods=["POST"]),
              Route("/stream", stream, methods=["GET"]), Route("/bug", handler(late_bug), methods=["GET"])]
    return make_app(routes, render=nova_error, tracer=trace.NoOpTracer(), port=8774)


class _LateBug(StreamingResponse):
    """A response that fails after its start was sent."""

    def __init__(self) -> None:
        super().__init__(iter(()))

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        raise RuntimeError("late")


_REQUESTS = [
    b"GET /s/1 HTTP/1.1\r\nHost: h\r\n\r\n",
    b"HEAD /s/2 HTTP/1.1\r\nHost: h\r\n\r\n",
    b'POST /s HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n{"a": 1}',
    b"POST /s HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n[1]",
    b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n",
    b"DELETE /s/1 HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /s/3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
]


async def _serve(protocol: type, requests: list[bytes]) -> _Socket:
    config = uvicorn.Config(_app(), lifespan="off", log_level="critical", loop="none", http=protocol,
                            date_header=False)
    config.load()
    proto = protocol(config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop())
    sock = _Socket()
    proto.connection_made(sock)  # type: ignore[arg-type]
    for raw in requests:
        if sock.closed:
            break
        proto.data_received(raw)
        for _ in range(50):  # until the cycle is done (the streamed body takes a few turns)
            await asyncio.sleep(0)
            if proto.cycle is not None and (proto.cycle.response_complete or sock.closed):
                break
        sock.answers.append(b"".join(sock.writes))
    proto.connection_lost(None)
    return sock


@pytest.mark.parametrize("requests", [_REQUESTS, [b"GET /bug HTTP/1.1\r\nHost: h\r\n\r\n"],
                                      [_REQUESTS[0], b"GET /bug HTTP/1.1\r\nHost: h\r\n\r\n", _REQUESTS[0]]])
async def test_same_bytes_as_uvicorn(requests: list[bytes]) -> None:
    ours = await _serve(OneWriteProtocol, requests)
    theirs = await _serve(HttpToolsProtocol, requests)
    assert ours.answers == theirs.answers and b"".join(ours.writes) == b"".join(theirs.writes)
    assert ours.closed == theirs.closed


async def test_a_plain_response_is_one_write() -> None:
    plain = [_REQUESTS[0], _REQUESTS[2], _REQUESTS[3], _REQUESTS[5], _REQUESTS[6]]  # 200, 202, 400, 404, 405
    ours = await _serve(OneWriteProtocol, plain)
    theirs = await _serve(HttpToolsProtocol, plain)
    assert len(ours.writes) == len(plain) and len(theirs.writes) == 2 * len(plain)
    assert [w.split(b" ", 2)[1] for w in ours.writes] == [b"200", b"202", b"400", b"404", b"405"]


async def test_a_failed_start_has_its_head_written_before_the_close() -> None:
    ours = await _serve(OneWriteProtocol, [b"GET /bug HTTP/1.1\r\nHost: h\r\n\r\n"])
    assert ours.writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and ours.closed


def test_head_holder_only_for_uvicorns_cycle_and_not_for_head() -> None:
    async def other(message: dict) -> None: ...

    assert head_holder(other, "GET") is None
    transport = HeadHoldingTransport(_Socket())  # type: ignore[arg-type]
    transport.hold_next()
    transport.write(b"head|")
    transport.write(b"body")
    transport.write(b"next")
    transport.hold_next()
    transport.write(b"kept|")
    transport.close()
    assert transport.transport.writes == [b"head|body", b"next", b"kept|"] and transport.is_closing()


async def test_make_server_serves_over_a_socket_with_one_write_protocol() -> None:
    from tests.conftest import free_port

    port = free_port()
    server = make_server(_app(), "127.0.0.1", port)
    assert server.config.http is OneWriteProtocol
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(3):
            writer.write(f"GET /s/{i} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert await asyncio.wait_for(reader.readexactly(len(f'{{"id":"{i}"}}')), 10) == f'{{"id":"{i}"}}'.encode()
        writer.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_keep_alive_timeout_closes_idle_connections_only(monkeypatch) -> None:
    """An idle connection is closed once its keep-alive timeout passed (by the sweep, at most a
    sweep late); one that keeps sending stays open; the sweep stops with the connections."""
    import harness.services.uvicorn_proto as proto_mod
    from tests.conftest import free_port

    monkeypatch.setattr(proto_mod, "SWEEP_S", 0.1)
    port = free_port()
    config = uvicorn.Config(_app(), host="127.0.0.1", port=port, lifespan="off", log_level="critical",
                            loop="none", http=OneWriteProtocol, timeout_keep_alive=0.5)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    async def ask(reader, writer, i: int) -> None:
        writer.write(f"GET /s/{i} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        await asyncio.wait_for(reader.readexactly(len(f'{{"id":"{i}"}}')), 10)

    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        idle = await asyncio.open_connection("127.0.0.1", port)
        busy = await asyncio.open_connection("127.0.0.1", port)
        await ask(*idle, 1)
        t0 = asyncio.get_running_loop().time()
        for i in range(8):  # 1.2 s of requests 0.15 s apart: never idle 0.5 s
            await ask(*busy, i)
            await asyncio.sleep(0.15)
        assert await asyncio.wait_for(idle[0].read(), 5) == b""  # closed by the server
        assert asyncio.get_running_loop().time() - t0 >= 0.5
        await ask(*busy, 9)  # still open
        busy[1].close()
        idle[1].close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def test_a_uvicorn_without_the_internals_relied_on_gets_its_stock_protocol(caplog) -> None:
    from harness.services.uvicorn_proto import OneWriteProtocol, server_protocol

    assert server_protocol() is OneWriteProtocol  # the uvicorn installed has them all

    class Renamed:  # a future uvicorn that renamed one of them
        def connection_made(self): ...
        def on_response_complete(self): ...
        def timeout_keep_alive_handler(self): ...
        def _start_asgi_task(self): ...

    with caplog.at_level("WARNING"):
        assert server_protocol(Renamed) == "httptools"
    assert "_unset_keepalive_if_required" in caplog.text

