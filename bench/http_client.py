"""CPU per request of the service-to-service HTTP *client* alone (the server in another process).

``http_path.py`` measures both ends on one loop; this one puts a minimal canned-answer server
(uvloop + httptools, keep-alive, a fixed JSON body) in a child process, so the CPU this process
spends is the client's own: :class:`harness.services.rest.RestClient` with its span, its
propagation headers and its timeout (sent by :mod:`harness.services.http1_client`, or aiohttp with
``--aiohttp``), or a bare ``aiohttp.ClientSession`` for comparison.
Three requests in four are GETs with an ``X-Auth-Token`` and a microversion header, one in four
a POST with a JSON body; 64 in flight.

    python bench/http_client.py                     # RestClient, no-op tracer
    python bench/http_client.py --tracing           # RestClient, the cloud's tracer (light spans)
    python bench/http_client.py --aiohttp           # RestClient on aiohttp for every request
    python bench/http_client.py --client aiohttp    # a bare aiohttp session (the floor of aiohttp)
    python bench/http_client.py --client http1      # the bare http1_client (RestClient's transport)

Prints one JSON line: the best of three runs' client CPU microseconds per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import sys
import time
from pathlib import Path
from typing import Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402
import uvloop  # noqa: E402

_BODY = json.dumps({"server": {"id": "0b5ee2b6-9d3f-4e4a-a1f0-5c3b0b8b8c1d", "status": "ACTIVE",
                               "name": "vm", "flavor": {"id": "1"}}}).encode()
_ANSWER = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
           b"openstack-api-version: compute 2.79\r\nx-openstack-request-id: req-0\r\n\r\n"
           % len(_BODY)) + _BODY


def _serve(sock: socket.socket) -> None:
    """The child: answer every request on every connection with the same 200 (keep-alive)."""
    import httptools

    class Proto(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            self.transport.write(_ANSWER)  # type: ignore[attr-defined]

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Proto, sock=sock)
        await server.serve_forever()

    uvloop.run(main())


async def measure(*, client: str, tracing: bool, port: int, requests: int, http1: bool = True,
                  concurrency: int = 64) -> dict:
    from opentelemetry import trace

    from harness.latency import LatencyModel, load_profile
    from harness.services.rest import RestClient
    from harness.telemetry import Telemetry

    base = f"http://127.0.0.1:{port}/v2.1/servers"
    get_headers = {"X-Auth-Token": "t" * 180, "OpenStack-API-Version": "compute 2.79"}
    if client == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())

        async def call(i: int) -> int:
            if i % 4 == 3:
                async with session.post(base, json={"name": f"vm{i}"}) as resp:
                    await resp.read()
                    return resp.status
            async with session.get(f"{base}/{i}", headers=get_headers) as resp:
                await resp.read()
                return resp.status

        close = session.close
    elif client == "http1":
        from yarl import URL

        from harness.services.http1_client import Http1Client

        raw = Http1Client(default_headers=[("User-Agent", "bench"), ("Accept", "application/json"),
                                           ("Accept-Encoding", "gzip, deflate")])

        async def call(i: int) -> int:
            if i % 4 == 3:
                status, _, _ = await raw.request("POST", URL(base), body=orjson.dumps({"name": f"vm{i}"}),
                                                 content_type="application/json")
                return status
            status, _, _ = await raw.request("GET", URL(f"{base}/{i}"), headers=get_headers)
            return status

        async def close() -> None:
            raw.close()
    else:
        tracer = (Telemetry(run_dir=None, use_env_otlp=False, export_process=False).tracer("nova-compute")
                  if tracing else trace.NoOpTracer())
        rest = RestClient(tracer, LatencyModel(load_profile("zero"), seed=1), user_agent="bench", http1=http1)

        async def call(i: int) -> int:
            if i % 4 == 3:
                r = await rest.request("POST", base, template="/v2.1/servers", json={"name": f"vm{i}"})
            else:
                r = await rest.request("GET", f"{base}/{i}", template="/v2.1/servers/{server_id}",
                                       headers=get_headers)
            r.json()
            return r.status_code

        close = rest.close

    async def worker(n: int) -> None:
        for i in range(n):
            status = await call(i)
            if status != 200:
                raise RuntimeError(f"unexpected answer {status}")

    try:
        best, per_run = await best_cpu_per_request(worker, requests=requests, concurrency=concurrency)
    finally:
        await close()
    return {"client_cpu_us_per_request": round(best * 1e6, 1), "client": client,
            "transport": "aiohttp" if client == "aiohttp" or not http1 else "http1_client", "tracing": tracing,
            "requests_per_run": per_run, "concurrency": concurrency}


async def best_cpu_per_request(worker: Callable[[int], Awaitable[None]], *, requests: int,
                               concurrency: int, warm_up: int = 50) -> tuple[float, int]:
    """(best CPU seconds per request over three runs, requests per run): ``concurrency`` workers,
    each ``worker(n)`` making n requests, after a warm-up that opens the connections."""
    await asyncio.gather(*(worker(warm_up) for _ in range(concurrency)))
    per_worker = max(1, requests // concurrency)
    best = float("inf")
    for _ in range(3):
        cpu0 = time.process_time()
        await asyncio.gather(*(worker(per_worker) for _ in range(concurrency)))
        best = min(best, (time.process_time() - cpu0) / (per_worker * concurrency))
    return best, per_worker * concurrency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", choices=["rest", "http1", "aiohttp"], default="rest",
                        help="RestClient, the bare http1_client (no span, headers, timeout), a bare aiohttp session")
    parser.add_argument("--tracing", action="store_true", help="rest: the cloud's tracer, not the no-op one")
    parser.add_argument("--aiohttp", action="store_true", help="rest: every request through aiohttp")
    parser.add_argument("--requests", type=int, default=20_000, help="requests per run (three runs)")
    args = parser.parse_args()
    if args.requests < 1:
        parser.error(f"--requests must be at least 1, not {args.requests}")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    child = multiprocessing.get_context("fork").Process(target=_serve, args=(sock,), daemon=True)
    child.start()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            print(json.dumps(runner.run(measure(client=args.client, tracing=args.tracing,
                                                port=sock.getsockname()[1], requests=args.requests,
                                                http1=not args.aiohttp))))
    finally:
        child.terminate()
        child.join(5)
        sock.close()


if __name__ == "__main__":
    main()
