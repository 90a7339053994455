"""The machine's plain HTTP ceiling on the harness's own server stack.

A minimal Starlette endpoint on uvicorn (uvloop + httptools, one process, one loop: as every
service of the embedded cloud is served) driven by an aiohttp client from another process. Its
requests per second, divided by the HTTP requests a boot makes, is the most boots per second any
harness on this stack could reach; ``bench_harness.py`` compares the real capacity with it.

    python bench/plain_http.py serve PORT     # the server (run by the benchmark)
    python bench/plain_http.py                # measure: prints requests/s
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


def serve(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def ok(request):
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/ping", ok)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, loop="uvloop",
                http="httptools", lifespan="off")


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


def measure(*, concurrency: int = 64, seconds: float = 5.0) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
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
            n, wall = r.run(_drive(f"http://127.0.0.1:{port}/ping", concurrency=concurrency, seconds=seconds))
    finally:
        proc.terminate()
        proc.wait(10)
    return {"requests": n, "wall_s": round(wall, 3), "requests_per_s": round(n / wall, 1),
            "concurrency": concurrency, "cpus": os.cpu_count()}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        print(json.dumps(measure()))
