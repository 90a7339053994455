"""CPU per service-to-service request on the harness's own HTTP path (both ends, one loop).

Where ``plain_http.py --in-loop`` measures a bare Starlette endpoint and a bare aiohttp client, this
measures what a boot's service-to-service calls really pass through: the server built by
:func:`harness.services.http.make_app` (server-span middleware, FaultGate with no fault set, a
microversioned endpoint and a JSON-body one) on :func:`~harness.services.http.make_server`, called
by :class:`harness.services.rest.RestClient`, all on one uvloop as in the embedded cloud. Three
requests in four are microversioned GETs, one in four a POST with a JSON body; 64 in flight.

    python bench/http_path.py              # tracing off (no-op tracer)
    python bench/http_path.py --tracing    # the cloud's tracer (harness.telemetry.Telemetry: the
                                           # light spans), no spans file: span work only
    python bench/http_path.py --tracing --sdk-tracer   # the OpenTelemetry SDK's own tracer
    python bench/http_path.py --aiohttp    # the client on aiohttp, not harness.services.http1_client

Prints one JSON line: the best of three runs' CPU microseconds per request (both ends).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvloop  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.routing import Route  # noqa: E402

from harness.faults import FaultInjector  # noqa: E402
from http_client import best_cpu_per_request  # noqa: E402  (bench/, this script's directory)
from harness.latency import LatencyModel, load_profile  # noqa: E402
from harness.services.fault_gate import FaultGate  # noqa: E402
from harness.services.http import handler, json_body, make_app, make_server, nova_error  # noqa: E402
from harness.services.microversion import COMPUTE, versioned  # noqa: E402
from harness.services.rest import RestClient  # noqa: E402
from harness.telemetry import Telemetry  # noqa: E402


async def _show(request: Request) -> tuple[dict, int]:
    return {"server": {"id": request.path_params["server_id"], "status": "ACTIVE"}}, 200


async def _create(request: Request) -> tuple[dict, int]:
    return {"server": await json_body(request)}, 202


def _tracer(tracing: bool, sdk: bool) -> trace.Tracer:
    """No-op, the SDK's own, or what a service of the cloud gets (without a spans file)."""
    if not tracing:
        return trace.NoOpTracer()
    if sdk:
        return TracerProvider().get_tracer("bench")
    return Telemetry(run_dir=None, use_env_otlp=False, export_process=False).tracer("nova-api")


async def measure(*, tracing: bool, requests: int, concurrency: int = 64, sdk: bool = False,
                  http1: bool = True) -> dict:
    tracer = _tracer(tracing, sdk)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = make_app([Route("/v2.1/servers/{server_id}", versioned(COMPUTE, nova_error)(_show), methods=["GET"]),
                    Route("/v2.1/servers", handler(_create), methods=["POST"])],
                   render=nova_error, tracer=tracer, port=port)
    app.app = FaultGate(app.app, faults=FaultInjector(), service="nova-api")  # as fault_gate.install does
    server = make_server(app, "127.0.0.1", port)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    client = RestClient(tracer, LatencyModel(load_profile("zero"), seed=1), user_agent="bench",
                        http1=http1)
    base = f"http://127.0.0.1:{port}/v2.1/servers"

    async def worker(n: int) -> None:
        for i in range(n):
            if i % 4 == 3:
                r = await client.request("POST", base, template="/v2.1/servers", json={"name": f"vm{i}"})
                expected = 202
            else:
                r = await client.request("GET", f"{base}/{i}", template="/v2.1/servers/{server_id}",
                                         headers={"X-Auth-Token": "t", "OpenStack-API-Version": "compute 2.79"})
                expected = 200
            if r.status_code != expected:
                raise RuntimeError(f"unexpected answer {r.status_code}: {r.text[:200]}")

    try:
        best, per_run = await best_cpu_per_request(worker, requests=requests, concurrency=concurrency,
                                                   warm_up=100)
    finally:
        await client.close()
        server.should_exit = True
        await task
    return {"cpu_us_per_request": round(best * 1e6, 1), "tracing": tracing,
            "tracer": type(tracer).__name__ if not sdk else "sdk",
            "client": "http1_client" if http1 else "aiohttp",
            "requests_per_run": per_run, "concurrency": concurrency,
            "path": "make_app + FaultGate + versioned/handler <- RestClient, one uvloop"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracing", action="store_true", help="the cloud's tracer instead of the no-op one")
    parser.add_argument("--sdk-tracer", action="store_true", help="with --tracing: the SDK's own tracer")
    parser.add_argument("--aiohttp", action="store_true", help="the client on aiohttp for every request")
    parser.add_argument("--requests", type=int, default=20_000, help="requests per run (three runs)")
    args = parser.parse_args()
    if args.requests < 1:
        parser.error(f"--requests must be at least 1, not {args.requests}")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        print(json.dumps(runner.run(measure(tracing=args.tracing, requests=args.requests,
                                            sdk=args.sdk_tracer, http1=not args.aiohttp))))


if __name__ == "__main__":
    main()
