"""Server CPU per request on the harness's own HTTP server path (uvicorn, the span middleware,
FaultGate, routing, handlers and responses), measured in a server process of its own.

``plain_http.py`` measures a bare Starlette endpoint and ``http_path.py`` both ends of a request in
one loop; this one isolates the server end, the part a service pays for each request it answers.
The server runs what :func:`harness.services.http.make_app` builds with the cloud's tracer (light
spans, no spans file) and a :class:`~harness.services.fault_gate.FaultGate` with no fault set, on
:func:`~harness.services.http.make_server`: a microversioned GET, a JSON POST, a Keystone-style
GET with a 404 body now and then. A client in this process sends what the harness's REST client
sends (W3C ``traceparent`` and ``baggage``, keystoneauth's ``Accept`` headers, a token), 64
requests in flight; the server process's CPU (/proc) over the requests answered is the figure.

    python bench/http_server.py                    # this tree
    python bench/http_server.py --tree /tmp/old    # another checkout's harness (A/B)
    python bench/http_server.py --tracing off      # a no-op tracer
    python bench/http_server.py --in-process       # uvicorn's protocol fed from memory, 64
                                                   # connections in one loop: no socket, no kernel

Prints one JSON line: the best of ``--runs`` runs' server CPU microseconds per request. The
socket figure includes the kernel's share (reads, writes, loopback TCP), so it shows a saved
system call; the in-process one is steadier on a busy box but sees only Python and uvloop work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()


# -- the server (run in the child: ``http_server.py serve PORT TRACING``) -------------------------

def build(port: int, tracing: bool):
    """The benchmark's app and its uvicorn server (not started)."""
    from opentelemetry import trace
    from starlette.routing import Route

    from harness.faults import FaultInjector
    from harness.services.fault_gate import FaultGate
    from harness.services.http import ApiError, handler, json_body, make_app, make_server, nova_error
    from harness.services.microversion import COMPUTE, api_version, versioned
    from harness.telemetry import Telemetry

    async def show(request):
        ver = api_version(request)
        return {"server": {"id": request.path_params["server_id"], "status": "ACTIVE",
                           "locked": ver.at_least("2.9")}}, 200

    async def create(request):
        body = await json_body(request)
        return {"server": {"id": "0" * 32, "name": body["server"]["name"]}}, 202

    async def token(request):
        if request.headers.get("x-subject-token") == "gone":
            raise ApiError(404, "Could not find token: gone.")
        return {"token": {"user": {"id": "u1"}, "expires_at": "2099-01-01T00:00:00.000000Z"}}, 200, {
            "X-Subject-Token": request.headers["x-subject-token"]}

    tracer = (Telemetry(run_dir=None, use_env_otlp=False, export_process=False).tracer("nova-api")
              if tracing else trace.NoOpTracer())
    routes = [Route("/v2.1/servers/{server_id}", versioned(COMPUTE, nova_error)(show), methods=["GET"]),
              Route("/v2.1/servers", versioned(COMPUTE, nova_error)(create), methods=["POST"]),
              Route("/v3/auth/tokens", handler(token), methods=["GET", "HEAD"])]
    app = make_app(routes, render=nova_error, tracer=tracer, port=port)
    app.app = FaultGate(app.app, faults=FaultInjector(), service="nova-api")  # as fault_gate.install
    return make_server(app, "127.0.0.1", port)


def serve(port: int, tracing: bool) -> None:
    from harness.aio import run, settle_gc

    server = build(port, tracing)

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        settle_gc()  # as a service process does once started
        await task

    run(main())


# -- in process: uvicorn's protocol fed from memory (no sockets, no kernel, no other process) -----

class _MemoryTransport:
    """The transport uvicorn's protocol writes to: collects what it writes, wakes the driver when
    a response is complete (its ``content-length`` of body bytes arrived)."""

    def __init__(self, port: int) -> None:
        self.port, self.data, self.waiter = port, b"", None
        self.closing = False

    def get_extra_info(self, name: str, default=None):
        return {"sockname": ("127.0.0.1", self.port), "peername": ("127.0.0.1", 40000)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.data += data
        head, sep, body = self.data.partition(b"\r\n\r\n")
        if sep:
            length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
            if len(body) >= length and self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(self.data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def _raw_requests(port: int) -> list[tuple[bytes, int]]:
    """The client's requests as bytes (what aiohttp sends for them) with the status expected."""
    host = f"Host: 127.0.0.1:{port}\r\n"
    common = "".join(f"{k}: {v}\r\n" for k, v in _HEADERS.items())
    version = "OpenStack-API-Version: compute 2.79\r\n"
    body = json.dumps({"server": {"name": "vm1", "flavorRef": "1", "imageRef": "c"}}).encode()
    out = []
    for i in range(8):
        if i in (3, 7):
            out.append(((f"POST /v2.1/servers HTTP/1.1\r\n{host}{common}{version}Content-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n").encode() + body, 202))
        elif i == 5:
            out.append((f"GET /v3/auth/tokens HTTP/1.1\r\n{host}{common}X-Subject-Token: tok{i}\r\n\r\n".encode(), 200))
        else:
            out.append((f"GET /v2.1/servers/{i} HTTP/1.1\r\n{host}{common}{version}\r\n".encode(), 200))
    out.append((f"GET /v3/auth/tokens HTTP/1.1\r\n{host}{common}X-Subject-Token: gone\r\n\r\n".encode(), 404))
    return out


def measure_in_process(*, tracing: bool, requests: int, runs: int, concurrency: int = 64) -> dict:
    """CPU per request of uvicorn's protocol and the app, fed requests from memory on one uvloop
    by ``concurrency`` keep-alive connections (each one request at a time): no socket, so no kernel time and none of the box's noise in it (the socket's share is in
    :func:`measure`)."""
    import gc

    import uvloop
    from uvicorn.server import ServerState

    server = build(18000, tracing)
    config = server.config
    config.load()
    reqs = _raw_requests(18000)

    async def run() -> list[float]:
        loop = asyncio.get_running_loop()
        state = ServerState()

        async def connection(n: int, offset: int) -> None:
            """One keep-alive connection sending ``n`` requests one after another."""
            proto = config.http_protocol_class(config=config, server_state=state, app_state={}, _loop=loop)
            transport = _MemoryTransport(18000)
            proto.connection_made(transport)
            for i in range(n):
                raw, expected = reqs[(i + offset) % len(reqs)]
                transport.data, transport.waiter = b"", loop.create_future()
                proto.data_received(raw)
                answer = await transport.waiter
                status = int(answer.split(b" ", 2)[1])
                if status != expected:
                    raise RuntimeError(f"unexpected answer {status}: {answer[:300]!r}")
                await asyncio.sleep(0)  # let the cycle's task finish (on_response_complete)
            proto.connection_lost(None)

        per = max(1, requests // concurrency)
        await asyncio.gather(*(connection(200, k) for k in range(concurrency)))  # warm up
        gc.collect()
        out = []
        for _ in range(runs):
            t0 = time.process_time()
            await asyncio.gather(*(connection(per, k) for k in range(concurrency)))
            out.append(1e6 * (time.process_time() - t0) / (per * concurrency))
        return out

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        results = r.run(run())
    return {"in_process_cpu_us_per_request": round(min(results), 2), "runs": [round(x, 2) for x in results],
            "requests_per_run": requests, "tracing": tracing, "tree": str(Path(__file__).resolve().parents[1])}


# -- the client and the measurement -------------------------------------------------------------

_HEADERS = {
    "User-Agent": "harness-nova-compute", "Accept": "application/json", "Accept-Encoding": "gzip, deflate",
    "X-Auth-Token": "gAAAAABnZ" + "x" * 180,
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "baggage": "openstack.boot.step=12",
}


async def _drive(port: int, *, requests: int, concurrency: int) -> int:
    import aiohttp

    base = f"http://127.0.0.1:{port}"
    get_headers = {**_HEADERS, "OpenStack-API-Version": "compute 2.79"}
    done = 0

    async def worker(session: aiohttp.ClientSession, n: int) -> None:
        nonlocal done
        for i in range(n):
            kind = i % 8
            if kind in (3, 7):
                r = await session.post(f"{base}/v2.1/servers", headers=get_headers,
                                       json={"server": {"name": f"vm{i}", "flavorRef": "1", "imageRef": "c"}})
                expected = 202
            elif kind == 5:
                subject = "gone" if i % 16 == 5 else f"tok{i}"
                r = await session.get(f"{base}/v3/auth/tokens", headers={**_HEADERS, "X-Subject-Token": subject})
                expected = 404 if subject == "gone" else 200
            else:
                r = await session.get(f"{base}/v2.1/servers/{i}", headers=get_headers)
                expected = 200
            await r.read()
            if r.status != expected:
                raise RuntimeError(f"unexpected answer {r.status}: {(await r.text())[:200]}")
            done += 1

    per = max(1, requests // concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        await asyncio.gather(*(worker(s, per) for _ in range(concurrency)))
    return done


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(*, tree: str | None, tracing: bool, requests: int, runs: int, concurrency: int) -> dict:
    import uvloop

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = tree
    proc = subprocess.Popen([sys.executable, str(HERE), "serve", str(port), "on" if tracing else "off"],
                            env=env, cwd=tree or str(HERE.parents[1]))
    results = []
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("the benchmark server did not start") from None
                time.sleep(0.1)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
            r.run(_drive(port, requests=max(2000, requests // 4), concurrency=concurrency))  # warm up
            for _ in range(runs):
                cpu0 = _cpu_seconds(proc.pid)
                n = r.run(_drive(port, requests=requests, concurrency=concurrency))
                results.append(1e6 * (_cpu_seconds(proc.pid) - cpu0) / n)
    finally:
        proc.terminate()
        proc.wait(10)
    return {"server_cpu_us_per_request": round(min(results), 1),
            "runs": [round(x, 1) for x in results], "requests_per_run": n, "tracing": tracing,
            "tree": tree or str(HERE.parents[1]), "concurrency": concurrency}


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "in-process":  # run by --in-process, in the tree
        sys.path.insert(0, os.getcwd())
        print(json.dumps(measure_in_process(tracing=sys.argv[2] == "on", requests=int(sys.argv[3]),
                                            runs=int(sys.argv[4]))))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        sys.path.insert(0, os.getcwd())
        serve(int(sys.argv[2]), sys.argv[3] == "on")
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", help="a checkout whose harness the server runs (default: this one)")
    parser.add_argument("--tracing", choices=["on", "off"], default="on")
    parser.add_argument("--requests", type=int, default=20_000, help="requests per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--in-process", action="store_true",
                        help="feed uvicorn's protocol from memory in one process: no sockets, steadier")
    args = parser.parse_args()
    for name in ("requests", "runs", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, not {getattr(args, name)}")
    if args.tree and not (Path(args.tree) / "harness").is_dir():
        parser.error(f"--tree {args.tree}: no harness package there")
    if args.in_process:
        env = dict(os.environ, PYTHONPATH=args.tree) if args.tree else None
        subprocess.run([sys.executable, str(HERE), "in-process", args.tracing, str(args.requests), str(args.runs)],
                       env=env, cwd=args.tree or str(HERE.parents[1]), check=True)
        return
    print(json.dumps(measure(tree=args.tree, tracing=args.tracing == "on", requests=args.requests,
                             runs=args.runs, concurrency=args.concurrency)))


if __name__ == "__main__":
    main()
