"""The small keep-alive client (harness.services.http1_client) against aiohttp, on the wire.

A scripted raw-socket server records every request's bytes and each connection, and answers by
path: Content-Length and chunked bodies, gzip, 204, error bodies, ``Connection: close``, a
connection closed without an answer, no answer at all. Each call goes through ``RestClient`` twice,
once on aiohttp (``http1=False``) and once on the small client, and both must put the same bytes
on the wire and read the same answers.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from typing import Any

import aiohttp
import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from harness.latency import LatencyModel, load_profile
from harness.services.http1_client import Http1Client, handles
from harness.services.rest import RestClient
from harness.steps import Step
from yarl import URL

_JSON = b'{"server": {"id": "abc", "status": "ACTIVE"}}'


def _answer(path: str) -> tuple[bytes, str]:
    """(bytes to send, what to do after: keep | close) for a request to ``path``."""
    if path.startswith("/chunked"):
        parts = [_JSON[:10], _JSON[10:]]
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                b"X-Multi: a\r\nX-Multi: b\r\n\r\n" + body), "keep"
    if path.startswith("/gzip"):
        z = gzip.compress(_JSON)
        return (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(z)) + z, "keep"
    if path.startswith("/nocontent"):
        return b"HTTP/1.1 204 No Content\r\n\r\n", "keep"
    if path.startswith("/missing"):
        body = b'{"itemNotFound": {"code": 404, "message": "Instance abc could not be found."}}'
        return (b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % len(body)) + body, "keep"
    if path.startswith("/close"):
        return (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(_JSON)) + _JSON, "close"
    if path.startswith("/drop"):
        return b"", "close"  # the server closes without answering
    if path.startswith("/hang"):
        return b"", "hang"
    if path.startswith("/continue"):  # an interim answer first
        return (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(_JSON)) + _JSON, "keep"
    if path.startswith("/garbage"):
        return b"HTX/1.1 200 OK\r\n\r\n", "close"
    if path.startswith("/eof"):  # neither Content-Length nor chunked: the body ends with the connection
        return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + _JSON, "close"
    return (b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Subject-Token: tok-1\r\n"
            b"Content-Length: %d\r\n\r\n" % len(_JSON)) + _JSON, "keep"


class Recorder:
    """A raw HTTP/1.1 server: records (connection number, request bytes), answers by path."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, bytes]] = []
        self.connections = 0
        self.open = 0
        self.max_open = 0
        self.delay = 0.0
        self.close_idle_after_answer = False

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                    return  # (cancelled: the test's loop is closing)
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append((number, head + body))
                if self.delay:
                    await asyncio.sleep(self.delay)
                data, then = _answer(head.split(b" ", 2)[1].decode())
                if then == "hang":
                    try:
                        await asyncio.sleep(30)
                    except asyncio.CancelledError:
                        pass
                    return
                writer.write(data)
                await writer.drain()
                if then == "close" or self.close_idle_after_answer:
                    return
        finally:
            self.open -= 1
            writer.close()


def _rest(http1: bool, tracer: trace.Tracer | None = None, **kw: Any) -> RestClient:
    return RestClient(tracer or trace.NoOpTracer(), LatencyModel(load_profile("zero"), seed=1),
                      user_agent="harness-test/1", http1=http1, **kw)


# the calls a service makes: (method, path, keyword arguments of RestClient.request)
CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v2/images/abc", {"headers": {"X-Auth-Token": "t" * 40, "OpenStack-API-Version": "image 2.16"}}),
    ("POST", "/v3/auth/tokens", {"json": {"auth": {"identity": {"methods": ["password"]}}, "name": "é"}}),
    ("POST", "/v2.1/servers/abc/action", {}),
    ("PUT", "/v3/p/attachments/x", {"json": {"attachment": {"connector": None}}}),
    ("DELETE", "/v2.0/ports/abc", {"headers": {"X-Auth-Token": "t"}}),
    ("GET", "/v2.0/ports?fields=id", {"params": {"device_id": "a b/é", "x": ["1", "2"]}}),
    ("GET", "/v3/auth/tokens", {"headers": {"Accept": "application/json;q=0.9", "X-Subject-Token": "s"},
                                "for_step": Step.GLANCE_VALIDATE_TOKEN}),
]


async def _run_calls(http1: bool, port: int, paths: list[tuple[str, str, dict[str, Any]]]) -> list[Any]:
    client = _rest(http1)
    out = []
    try:
        for method, path, kw in paths:
            r = await client.request(method, f"http://127.0.0.1:{port}{path}", template=path, **kw)
            out.append((r.status_code, list(r.headers.items()), r.content))
    finally:
        await client.close()
    return out


async def test_same_request_bytes_as_aiohttp() -> None:
    wires = []
    for http1 in (False, True):
        rec = Recorder()
        port = await rec.start()
        try:
            await _run_calls(http1, port, CALLS)
        finally:
            await rec.stop()
        wires.append([req.replace(b":%d" % port, b":PORT") for _, req in rec.requests])
    assert len(wires[1]) == len(CALLS)
    for aio_bytes, own_bytes in zip(*wires):
        assert own_bytes == aio_bytes
    assert b"baggage: openstack.boot.step=" in wires[1][-1]  # the for_step call's baggage went out


async def test_same_answers_as_aiohttp() -> None:
    paths = [("GET", p, {}) for p in ("/ok", "/chunked", "/gzip", "/nocontent", "/missing", "/close", "/ok",
                                      "/continue", "/ok")]
    paths.append(("POST", "/missing", {"json": {"a": 1}}))
    answers = []
    for http1 in (False, True):
        rec = Recorder()
        port = await rec.start()
        try:
            answers.append(await _run_calls(http1, port, paths))
        finally:
            await rec.stop()
    assert answers[1] == answers[0]
    got = dict(zip([p for _, p, _ in paths], answers[1]))
    assert got["/chunked"][2] == _JSON and got["/gzip"][2] == _JSON
    assert got["/nocontent"][:1] == (204,) and got["/nocontent"][2] == b""
    assert got["/missing"][0] == 404 and b"itemNotFound" in got["/missing"][2]
    assert [v for k, v in got["/chunked"][1] if k == "X-Multi"] == ["a", "b"]


async def test_body_delimited_by_the_connection_end() -> None:
    rec = Recorder()
    port = await rec.start()
    try:
        own = await _run_calls(True, port, [("GET", "/eof", {})])
        aio = await _run_calls(False, port, [("GET", "/eof", {})])
    finally:
        await rec.stop()
    assert own == aio and own[0][2] == _JSON


async def test_connections_are_reused_and_bounded() -> None:
    rec = Recorder()
    port = await rec.start()
    client = _rest(True)
    client._http1.limit_per_host = 2  # type: ignore[union-attr]
    rec.delay = 0.01
    try:
        for _ in range(5):
            assert (await client.request("GET", f"http://127.0.0.1:{port}/ok", template="/ok")).status_code == 201
        assert rec.connections == 1  # one keep-alive connection for sequential calls
        results = await asyncio.gather(*(client.request("GET", f"http://127.0.0.1:{port}/ok", template="/ok")
                                         for _ in range(12)))
        assert [r.status_code for r in results] == [201] * 12
        assert rec.max_open == 2 and rec.connections == 2  # never more than the limit, then reused
    finally:
        await client.close()
        await rec.stop()


async def test_server_closing_a_keep_alive_connection() -> None:
    rec = Recorder()
    port = await rec.start()
    client = _rest(True)
    url = f"http://127.0.0.1:{port}"
    try:
        # "Connection: close": the next request opens a new connection
        assert (await client.request("GET", f"{url}/close", template="/close")).content == _JSON
        assert (await client.request("GET", f"{url}/ok", template="/ok")).status_code == 201
        assert rec.connections == 2
        # the server drops idle connections after answering: the next call notices and reconnects
        rec.close_idle_after_answer = True
        for _ in range(3):
            assert (await client.request("GET", f"{url}/ok", template="/ok")).status_code == 201
            await asyncio.sleep(0.05)
        assert rec.connections == 4  # the kept one answered once more, then one each
        # ... and when the next GET goes out before the close is seen, it is sent again afresh
        for _ in range(5):
            assert (await client.request("GET", f"{url}/ok", template="/ok")).status_code == 201
        assert rec.connections == 9
    finally:
        await client.close()
        await rec.stop()


async def test_dropped_connection_is_an_aiohttp_error_for_both() -> None:
    for http1 in (False, True):
        rec = Recorder()
        port = await rec.start()
        client = _rest(http1)
        try:
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await client.request("POST", f"http://127.0.0.1:{port}/drop", template="/drop", json={})
            # the pool recovers
            assert (await client.request("GET", f"http://127.0.0.1:{port}/ok", template="/ok")).status_code == 201
        finally:
            await client.close()
            await rec.stop()


async def test_refused_connection_matches_aiohttp() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        errors = []
        for http1 in (False, True):
            client = _rest(http1)
            try:
                with pytest.raises(aiohttp.ClientConnectorError) as info:
                    await client.request("GET", f"http://127.0.0.1:{port}/ok", template="/ok")
                errors.append((type(info.value), str(info.value), info.value.host, info.value.port))
            finally:
                await client.close()
    assert errors[1] == errors[0]


async def test_timeout_fails_the_span_and_drops_the_connection() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    rec = Recorder()
    port = await rec.start()
    client = _rest(True, provider.get_tracer("test"), timeout=0.2)
    try:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.request("GET", f"http://127.0.0.1:{port}/hang", template="/hang")
        assert time.monotonic() - t0 < 10
        assert (await client.request("GET", f"http://127.0.0.1:{port}/ok", template="/ok")).status_code == 201
        assert rec.connections == 2  # the timed-out connection was not reused
    finally:
        await client.close()
        await rec.stop()
    failed = [s for s in exporter.get_finished_spans() if s.name == "GET /hang"]
    assert failed and failed[0].attributes["error.type"] == "TimeoutError"
    assert failed[0].status.status_code.name == "ERROR"


def test_handles_plain_http_only() -> None:
    assert handles(URL("http://127.0.0.1:5000/v3"), "GET")
    assert not handles(URL("https://127.0.0.1:5000/v3"), "GET")
    assert not handles(URL("http://127.0.0.1:5000/v3"), "HEAD")
    assert Http1Client().encode("GET", URL("http://h/p?q=1"), {}, None).startswith(b"GET /p?q=1 HTTP/1.1\r\nHost: h\r\n")


def test_header_injection_is_refused() -> None:
    with pytest.raises(ValueError, match="X-Evil"):
        Http1Client().encode("GET", URL("http://h/"), {"X-Evil": "a\r\nHost: other"}, None)


async def test_json_body_is_orjson_and_utf8() -> None:
    rec = Recorder()
    port = await rec.start()
    try:
        await _run_calls(True, port, [("POST", "/ok", {"json": {"name": "é", "n": [1, 2]}})])
    finally:
        await rec.stop()
    body = rec.requests[0][1].split(b"\r\n\r\n", 1)[1]
    assert orjson.loads(body) == {"name": "é", "n": [1, 2]}


async def test_malformed_answer_is_a_client_response_error_for_both() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for http1 in (False, True):
        rec = Recorder()
        port = await rec.start()
        client = _rest(http1, provider.get_tracer("test"))
        try:
            with pytest.raises(aiohttp.ClientResponseError) as info:
                await client.request("GET", f"http://127.0.0.1:{port}/garbage", template="/garbage")
            assert info.value.status == 400 and str(info.value)
            assert (await client.request("GET", f"http://127.0.0.1:{port}/ok", template="/ok")).status_code == 201
        finally:
            await client.close()
            await rec.stop()
    failed = [s for s in exporter.get_finished_spans() if s.name == "GET /garbage"]
    assert [s.attributes["error.type"] for s in failed] == ["ClientResponseError"] * 2
