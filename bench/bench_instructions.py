"""Tracing's cost in instructions a boot: the cloud under callgrind, tracing on and off.

Throughput on this 2-core VM moves between runs by 10-15 % for reasons outside the harness (the
same code, hash seed and address layout, pinned or not, lands in a fast or a slow cluster from
one run to the next; see bench/RESULTS.md), so a change worth 2 % of a boot needs a dozen
alternated runs to show. Instructions do not drift: ``valgrind --tool=callgrind`` counts the ones
the cloud's process executes, whatever else the machine is doing. This runs the embedded cloud
(``harness up``, profile ``zero``, its own process, the span-export child outside valgrind) under
callgrind, boots ``--warmup`` servers, zeroes the counters, boots ``--boots`` more (``--concurrency``
in flight), dumps the counters, and divides. Tracing on and off, then the ratio.

    python bench/bench_instructions.py                 # on and off, 200 boots each (~3 min)
    python bench/bench_instructions.py --only on       # one side, to compare two checkouts

Instructions are not time: they miss cache misses and the export child's work on the other core
(both part of what ``bench_capacity.py`` measures). Use this to compare code, that one to state
throughput. The cloud is ~50 times slower under valgrind, so the driver's status polls are spaced
by ``--poll`` (2 s by default, not the 50 ms of ``bench_capacity.py``: at 50 ms a slowed cloud
would serve ~40 times more polls per boot than at full speed, and the figure would be theirs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_capacity as cap  # noqa: E402

from harness import aio  # noqa: E402

_TOTALS = re.compile(r"^summary:\s*(\d+)", re.M)


def _instructions(dump: Path) -> int:
    """The ``Ir`` total of a callgrind dump (its ``summary:`` line)."""
    match = _TOTALS.search(dump.read_text(errors="replace"))
    if match is None:
        raise SystemExit(f"no instruction total in {dump}")
    return int(match.group(1))


async def _drive(auth_url: str, pid: int, *, warmup: int, boots: int, concurrency: int,
                 poll: float, dump_prefix: str) -> int:
    from opentelemetry import trace

    from harness.client import OpenStackClient
    from harness.loadgen import BootOptions, Booter, fixed_count

    async with OpenStackClient(auth_url) as client:
        await client.authenticate()
        image = next(i["id"] for i in await client.images() if i["name"].startswith("cirros"))
        booter = Booter(client, trace.NoOpTracer(), image,
                        BootOptions(delete=False, poll_interval=poll, watch="list"))
        await fixed_count(booter, count=warmup, concurrency=concurrency)
        subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
        results = await fixed_count(booter, count=boots, concurrency=concurrency)
        subprocess.run(["callgrind_control", "-d", dump_prefix, str(pid)], check=True,
                       capture_output=True)
    return sum(r.status == "ACTIVE" for r in results)


def measure(tracing: bool, *, warmup: int, boots: int, concurrency: int, poll: float,
            keep: Path | None = None) -> dict:
    """Instructions a boot of the cloud's process, tracing on or off (``keep``: copy the
    measured boots' callgrind dump there, for ``callgrind_annotate``)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        wrapper = ["valgrind", "-q", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no"]
        proc, auth_url = cap.start_cloud(Path(tmp) / "run", profile="zero", hosts=64, tracing=tracing,
                                         wrapper=wrapper, startup_s=300)
        try:
            pid = _valgrind_pid(proc.pid)
            active = aio.run(_drive(auth_url, pid, warmup=warmup, boots=boots, concurrency=concurrency,
                                    poll=poll, dump_prefix="measured"))
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(120)
        dumps = sorted(Path(tmp).glob("callgrind.out*"), key=lambda p: p.stat().st_mtime)
        measured = [d for d in dumps if d.name != "callgrind.out"]
        if not measured:
            raise SystemExit("callgrind wrote no dump of the measured boots")
        total = _instructions(measured[0])
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(measured[0], keep / f"callgrind.{'on' if tracing else 'off'}.out")
    if active < boots:
        raise SystemExit(f"only {active} of {boots} boots reached ACTIVE under valgrind")
    return {"tracing": tracing, "boots": boots, "instructions": total,
            "instructions_per_boot": round(total / boots)}


def _valgrind_pid(pid: int) -> int:
    """The process callgrind_control talks to: valgrind replaces itself with its tool, so the
    Popen's pid is that process (found again by its name, in case a shell stood between)."""
    for candidate in [pid, *cap._descendants(pid)]:
        try:
            name = Path(f"/proc/{candidate}/comm").read_text().strip()
        except OSError:
            continue
        if name.startswith("callgrind"):
            return candidate
    raise SystemExit("the cloud is not running under callgrind")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boots", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--poll", type=float, default=2.0, help="the driver's status poll interval, s")
    ap.add_argument("--only", choices=("on", "off"))
    ap.add_argument("--keep", type=Path, metavar="DIR",
                    help="keep the callgrind dumps here (callgrind_annotate --inclusive=yes DIR/callgrind.on.out)")
    args = ap.parse_args()
    if args.boots < 1 or args.warmup < 1 or args.concurrency < 1 or args.poll <= 0:
        raise SystemExit("--boots, --warmup and --concurrency must be >= 1 and --poll > 0")
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: install valgrind (Debian: apt-get install valgrind)")
    sides = [s == "on" for s in ((args.only,) if args.only else ("on", "off"))]
    out: dict = {}
    for tracing in sides:
        t0 = time.monotonic()
        res = measure(tracing, warmup=args.warmup, boots=args.boots, concurrency=args.concurrency,
                      poll=args.poll, keep=args.keep)
        res["wall_s"] = round(time.monotonic() - t0, 1)
        out["on" if tracing else "off"] = res
        print(f"tracing {'on ' if tracing else 'off'}: {res['instructions_per_boot'] / 1e6:.3f} M "
              f"instructions a boot ({args.boots} boots, {res['wall_s']} s under valgrind)", flush=True)
    if len(out) == 2:
        ratio = out["on"]["instructions_per_boot"] / out["off"]["instructions_per_boot"]
        out["on_over_off"] = round(ratio, 4)
        print(f"tracing adds {100 * (ratio - 1):.1f} % instructions a boot "
              f"({(out['on']['instructions_per_boot'] - out['off']['instructions_per_boot']) / 1e6:.3f} M)")
    out["machine"] = f"{os.uname().machine}, Python {sys.version.split()[0]}"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
