"""RestClient on the wire: the headers a real OpenStack client sends (and aiohttp adds none of its
own), the JSON body, and the client span's HTTP attributes."""

from __future__ import annotations

import asyncio
import socket

import orjson
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from harness.latency import LatencyModel, load_profile
from harness.services.http import handler, make_app, make_server, nova_error
from harness.services.rest import RestClient


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_headers_body_and_span_attributes() -> None:
    seen: list[tuple[list[tuple[str, str]], bytes]] = []

    async def echo(request: Request) -> Response:
        seen.append((list(request.headers.items()), await request.body()))
        return Response(b'{"ok": true}', 201, media_type="application/json",
                        headers={"X-OpenStack-Request-ID": "req-1"})

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    port = _port()
    app = make_app([Route("/v2.0/ports", handler(echo), methods=["POST"])], render=nova_error,
                   tracer=tracer, port=port)
    server = make_server(app, "127.0.0.1", port)
    task = asyncio.create_task(server.serve())
    client = RestClient(tracer, LatencyModel(load_profile("zero"), seed=1), user_agent="harness-test/1")
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        for _ in range(2):  # the second request reuses the pooled connection
            resp = await client.request("POST", f"http://127.0.0.1:{port}/v2.0/ports",
                                        template="/v2.0/ports", json={"port": {"name": "é"}},
                                        headers={"X-Auth-Token": "tok"})
            assert resp.status_code == 201 and resp.json() == {"ok": True}
            assert resp.headers["X-OpenStack-Request-ID"] == "req-1"
    finally:
        await client.close()
        server.should_exit = True
        await task

    headers, body = seen[0]
    names = [k for k, _ in headers]
    assert len(names) == len(set(names))  # nothing sent twice
    h = dict(headers)
    assert h["user-agent"] == "harness-test/1"
    assert h["accept"] == "application/json"
    assert h["accept-encoding"] == "gzip, deflate"
    assert h["x-auth-token"] == "tok"
    assert h["content-type"] == "application/json"
    assert h["host"] == f"127.0.0.1:{port}"
    assert "traceparent" in h
    assert orjson.loads(body) == {"port": {"name": "é"}}

    client_spans = [s for s in exporter.get_finished_spans() if s.kind.name == "CLIENT"]
    assert len(client_spans) == 2
    attrs = dict(client_spans[0].attributes or {})
    assert client_spans[0].name == "POST /v2.0/ports"
    assert attrs["http.request.method"] == "POST"
    assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == port
    assert attrs["url.full"] == f"http://127.0.0.1:{port}/v2.0/ports"
    assert attrs["url.template"] == "/v2.0/ports"
    assert attrs["http.response.status_code"] == 201
    server_spans = [s for s in exporter.get_finished_spans() if s.kind.name == "SERVER"]
    assert server_spans[0].name == "POST /v2.0/ports"
    assert dict(server_spans[0].attributes or {})["http.route"] == "/v2.0/ports"
    assert server_spans[0].parent.span_id == client_spans[0].context.span_id
