"""The machine's plain HTTP ceiling on the harness's own server stack.

A minimal Starlette endpoint on uvicorn, configured as every service of the embedded cloud is
(``make_server``: uvloop, uvicorn's httptools protocol writing a response in one write, one
process, one loop) driven by an aiohttp client from another process. Its
requests per second, divided by the HTTP requests a boot makes, is the most boots per second any
harness on this stack could reach; ``bench_harness.py`` compares the real capacity with it.

    python bench/plain_http.py serve PORT     # the server (run by the benchmark)
    python bench/plain_http.py                # measure: prints requests/s

Two ceilings, because a boot's requests are of two kinds: those from the load generator (another
process: the cloud pays the server end only, :func:`measure`) and service-to-service ones (both
ends in the cloud's one loop, :func:`measure_in_loop`: the same endpoint and the services' own
keep-alive client (``harness.services.http1_client``) sharing one uvloop, as nova-compute calling
glance-api does in the embedded cloud).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import aiohttp


def _app():
    """The minimal endpoint, with what the harness's server stack does to every response that is
    not the service's work: its head kept for the body's write (``OneWriteProtocol``)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from harness.services.uvicorn_proto import head_holder

    async def ok(request):
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/ping", ok)])

    async def one_write(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)

        async def held(message):
            if message["type"] == "http.response.start":
                holder = head_holder(send, scope["method"])
                if holder is not None:
                    holder.hold_next()
            await send(message)

        await app(scope, receive, held)

    return one_write


def _server(port: int):
    """uvicorn configured as the cloud's services are (``harness.services.http.make_server``)."""
    from harness.services.http import make_server

    return make_server(_app(), "127.0.0.1", port)


def serve(port: int) -> None:
    import uvloop

    uvloop.run(_server(port).serve())


def measure_in_loop(*, concurrency: int = 64, seconds: float = 5.0) -> dict:
    """Requests/s with the server and its client in one process and one loop (both ends' CPU)."""
    import uvloop

    port = _free_port()

    async def run() -> tuple[int, float, float]:
        server = _server(port)
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            url = f"http://127.0.0.1:{port}/ping"
            await _drive_http1(url, concurrency=concurrency, seconds=1.0)  # warm
            cpu0 = time.process_time()
            n, wall = await _drive_http1(url, concurrency=concurrency, seconds=seconds)
            return n, wall, time.process_time() - cpu0
        finally:
            server.should_exit = True
            await task

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        n, wall, cpu = r.run(run())
    return {"requests": n, "wall_s": round(wall, 3), "requests_per_s": round(n / wall, 1),
            "cpu_us_per_request": round(1e6 * cpu / n, 1), "requests_per_cpu_s": round(n / cpu, 1),
            "concurrency": concurrency, "cpus": os.cpu_count(), "mode": "server and client in one loop"}


async def _drive(url: str, *, concurrency: int, seconds: float) -> tuple[int, float]:
    n = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        async def worker() -> None:
            nonlocal n
            while time.perf_counter() < deadline:
                async with s.get(url) as r:
                    await r.read()
                n += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n, time.perf_counter() - t0


async def _drive_http1(url: str, *, concurrency: int, seconds: float) -> tuple[int, float]:
    """As :func:`_drive`, on the client the services use for their own plain-http calls
    (``harness.services.http1_client``), so the in-loop ceiling is that of the cloud's path."""
    from yarl import URL

    from harness.services.http1_client import Http1Client

    client = Http1Client(limit_per_host=concurrency)
    target = URL(url)
    n = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal n
        while time.perf_counter() < deadline:
            await client.request("GET", target)
            n += 1

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n, time.perf_counter() - t0
    finally:
        client.close()


def measure(*, concurrency: int = 64, seconds: float = 5.0) -> dict:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "serve", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
            r.run(_drive(f"http://127.0.0.1:{port}/ping", concurrency=concurrency, seconds=1.0))  # warm
            cpu0 = _cpu_seconds(proc.pid)
            n, wall = r.run(_drive(f"http://127.0.0.1:{port}/ping", concurrency=concurrency, seconds=seconds))
            cpu = _cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait(10)
    return {"requests": n, "wall_s": round(wall, 3), "requests_per_s": round(n / wall, 1),
            "server_cpu_us_per_request": round(1e6 * cpu / n, 1),
            "requests_per_cpu_s": round(n / cpu, 1), "server_cpu_util": round(cpu / wall, 3),
            "concurrency": concurrency, "cpus": os.cpu_count()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    from bench_capacity import _cpu_seconds as process_tree_cpu  # the benchmarks' one CPU reader

    return process_tree_cpu(pid)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    elif sys.argv[1:] == ["--in-loop"]:
        print(json.dumps(measure_in_loop()))
    else:
        print(json.dumps(measure()))
