"""Capacity of the embedded cloud: boots per second to ACTIVE and CPU per boot.

The cloud runs as its own process (``harness up``, profile ``zero`` by default, so every span's
duration is the harness's own work); this process drives it with N boots, C in flight, polling
``GET /servers/{id}`` until ACTIVE. CPU per boot is the cloud's user+system time over the run (from
/proc: the ``harness up`` process and its children, e.g. the span export process; both are also
printed apart), divided by the boots: the load generator's CPU is not counted.

    python bench/bench_capacity.py --boots 400 --concurrency 32
    python bench/bench_capacity.py --no-tracing        # the same without spans (overhead check)

Prints a human summary and one JSON line (for bench/RESULTS.md and scripts).

To compare two checkouts, run each one's own script, alternating: ``python /tmp/old/bench/
bench_capacity.py`` then ``python bench/bench_capacity.py``. The driver and the cloud it starts
both run the script's tree (the cloud in that tree's directory: a relative path in ``--up-args``
is relative to it), whatever the shell's directory or PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: the tree this script belongs to: the driver and the cloud it starts both run this tree's code
#: (run ``python <tree>/bench/bench_capacity.py`` to measure another checkout)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import aio  # noqa: E402
from harness.client import OpenStackClient  # noqa: E402
from harness.loadgen import BootOptions, Booter, fixed_count, percentile  # noqa: E402


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _cpu_seconds(pid: int, *, descendants: bool = True) -> float:
    """CPU of ``pid`` and of its live descendants (``harness up --processes`` runs a process per
    service under a supervisor; a traced cloud has its span export process)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in [pid, *(_descendants(pid) if descendants else ())]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return total


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), ()):
            out.append(c)
            todo.append(c)
    return out


def start_cloud(run_dir: Path, *, profile: str, hosts: int, tracing: bool,
                extra_args: list[str] | None = None, wrapper: list[str] | None = None,
                startup_s: float = 60) -> tuple[subprocess.Popen, str]:
    """Start ``harness up`` (under ``wrapper``, e.g. valgrind, when given) and return it with its
    Keystone URL once every service listens (at most ``startup_s``)."""
    keys = ["KEYSTONE", "NOVA", "GLANCE", "NEUTRON", "CINDER"]
    ports = dict(zip(keys, _free_ports(5)))
    env = {**os.environ, **{f"HARNESS_PORTS__{k}": str(v) for k, v in ports.items()},
           "HARNESS_TRACING": "true" if tracing else "false"}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    # `-m` puts the working directory first on sys.path: run in ROOT, and say it in PYTHONPATH
    # for the cloud's own children (the span-export process), so a checkout elsewhere measures
    # its own code, not whatever tree the shell happens to be in
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [*(wrapper or []), sys.executable, "-m", "harness.cli", "up", "--profile", profile, "--hosts", str(hosts),
           "--run-dir", str(Path(run_dir).resolve()), *(extra_args or [])]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    auth_url = f"http://127.0.0.1:{ports['KEYSTONE']}/v3"
    deadline = time.time() + startup_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"cloud exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", ports["CINDER"]), timeout=0.2):
                break
        except OSError:
            time.sleep(0.1)
    time.sleep(0.5 if not wrapper else 5)  # the last services and the service tokens
    return proc, auth_url


async def drive(auth_url: str, *, boots: int, concurrency: int, poll: float, pid: int,
                watch: str = "list") -> dict:
    from opentelemetry import trace

    async with OpenStackClient(auth_url) as client:
        await client.authenticate()
        image = next(i["id"] for i in await client.images() if i["name"].startswith("cirros"))
        booter = Booter(client, trace.NoOpTracer(), image, BootOptions(delete=False, poll_interval=poll,
                                                                          watch=watch))
        # warm-up: connections, caches, first-request imports
        await fixed_count(booter, count=min(20, boots), concurrency=min(concurrency, 20))
        cpu0, own0, t0 = _cpu_seconds(pid), _cpu_seconds(pid, descendants=False), time.perf_counter()
        driver0 = time.process_time()
        results = await fixed_count(booter, count=boots, concurrency=concurrency)
        wall, cpu = time.perf_counter() - t0, _cpu_seconds(pid) - cpu0
        own = _cpu_seconds(pid, descendants=False) - own0
        driver = time.process_time() - driver0
    active = [r for r in results if r.status == "ACTIVE"]
    lat = [r.active_s for r in active if r.active_s is not None]
    return {
        "boots": boots, "active": len(active), "concurrency": concurrency, "poll_s": poll, "watch": watch,
        "wall_s": round(wall, 3), "boots_per_s": round(len(active) / wall, 2),
        "cloud_cpu_s": round(cpu, 3), "cpu_ms_per_boot": round(1000 * cpu / max(1, len(active)), 2),
        "cloud_cpu_util": round(cpu / wall, 3),
        # of which the `harness up` process itself, and its children (the span export process)
        "main_cpu_ms_per_boot": round(1000 * own / max(1, len(active)), 2),
        "children_cpu_ms_per_boot": round(1000 * (cpu - own) / max(1, len(active)), 2),
        "p50_ms": round(1000 * percentile(lat, 50), 1), "p95_ms": round(1000 * percentile(lat, 95), 1),
        # this driver's own CPU (it runs beside the cloud: near 1.0 utilisation it, not the
        # cloud, limits the figure)
        "driver_cpu_ms_per_boot": round(1000 * driver / max(1, len(active)), 2),
        "driver_cpu_util": round(driver / wall, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boots", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--hosts", type=int, default=64)
    ap.add_argument("--profile", default="zero")
    ap.add_argument("--poll", type=float, default=0.05, help="client poll interval, s")
    ap.add_argument("--watch", choices=("list", "server"), default="list",
                    help="list: one GET /servers/detail?changes-since= per interval for all boots in "
                    "flight (default); server: GET /servers/{id} per boot, as openstacksdk and Rally poll")
    ap.add_argument("--no-tracing", action="store_true")
    ap.add_argument("--up-args", default="",
                    help="more `harness up` arguments, e.g. \"--processes --transport amqp://... --db "
                    "postgresql+asyncpg://...\" (CPU is then the whole process tree's)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, auth_url = start_cloud(Path(tmp), profile=args.profile, hosts=args.hosts, tracing=not args.no_tracing,
                                     extra_args=shlex.split(args.up_args))
        try:
            res = aio.run(drive(auth_url, boots=args.boots, concurrency=args.concurrency, poll=args.poll, pid=proc.pid,
                                 watch=args.watch))
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
    res.update(profile=args.profile, tracing=not args.no_tracing, hosts=args.hosts,
               machine=f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}")
    print(f"{res['active']}/{res['boots']} ACTIVE in {res['wall_s']} s: {res['boots_per_s']} boots/s to ACTIVE, "
          f"{res['cpu_ms_per_boot']} ms cloud CPU per boot ({res['main_cpu_ms_per_boot']} the main process, "
          f"{res['children_cpu_ms_per_boot']} its children; cloud at {res['cloud_cpu_util'] * 100:.0f}% of a core), "
          f"p50 {res['p50_ms']} ms, p95 {res['p95_ms']} ms  [profile {args.profile}, tracing "
          f"{'on' if res['tracing'] else 'off'}]")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
