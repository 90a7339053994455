"""Property: concurrent boots and deletes through several scheduler workers never over-commit a
host, keep the books straight, and every boot ends with a host or with NoValidHost.

The real :class:`NovaScheduler` runs against a real Nova DB (SQLite file), with its claim, its
placement-style conflict retries and its re-reads; only the RPC around it is left out (the workers
call ``select_destinations`` directly, as the scheduler's RPC workers do).
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.config import HostGroup, Settings
from harness.db import NovaDB
from harness.latency import LatencyModel, load_profile
from harness.messaging.memory import MemoryTransport
from harness.scheduling import load_all
from harness.services.base import CloudContext
from harness.services.nova_compute import FakeHost, host_names
from harness.services.nova_scheduler import NoValidHost, NovaScheduler
from harness.telemetry import Telemetry

FLAVORS = [(1, 512, 1), (1, 2048, 20), (2, 4096, 40), (4, 8192, 80)]  # vcpus, MB, GB
GROUPS = [HostGroup(count=2, vcpus=4, memory_mb=8192, local_gb=100, prefix="small"),
          HostGroup(count=2, vcpus=8, memory_mb=16384, local_gb=200, prefix="big", availability_zone="az2")]

# Mostly boots, so the 48 GB of the four hosts fill up and workers race for the last room.
ops = st.lists(st.one_of(st.tuples(st.just("boot"), st.integers(0, len(FLAVORS) - 1)),
                         st.tuples(st.just("boot"), st.integers(2, len(FLAVORS) - 1)),
                         st.tuples(st.just("delete"), st.integers(0, 10**6))), min_size=10, max_size=80)


async def scenario(tmp: Path, algorithm: str, workers: int, ratio: float, plan: list[tuple[str, int]],
                   *, db_url: str = "") -> None:
    s = Settings(run_dir=tmp, profile="zero", seed=3, scheduler=algorithm, scheduler_workers=workers,
                 host_groups=GROUPS, ram_allocation_ratio=ratio, cpu_allocation_ratio=ratio, db_url=db_url)
    db = NovaDB(s.effective_db_url())
    await db.create_schema()
    telemetry = Telemetry(run_dir=None, enabled=False, use_env_otlp=False)
    ctx = CloudContext(settings=s, telemetry=telemetry, latency=LatencyModel(load_profile("zero"), seed=3),
                       transport=MemoryTransport(), db=db)
    await db.seed([FakeHost(n, g, s, None, None).row for n, g in host_names(s.effective_host_groups())])
    scheduler = NovaScheduler(ctx)
    await scheduler.start()
    queue: asyncio.Queue = asyncio.Queue()
    for op in plan:
        queue.put_nowait(op)
    live: list[str] = []
    outcomes: dict[str, str] = {}
    rng = random.Random(len(plan))

    async def worker() -> None:
        while not queue.empty():
            kind, arg = queue.get_nowait()
            if kind == "delete":
                if live:
                    await db.free(live.pop(arg % len(live)))
                continue
            uuid = f"inst-{len(outcomes)}-{rng.random():.6f}"
            vcpus, mem, disk = FLAVORS[arg]
            spec = {"instance_uuid": uuid, "vcpus": vcpus, "memory_mb": mem, "disk_gb": disk,
                    "availability_zone": None, "image_id": None, "image_arch": None}
            outcomes[uuid] = "pending"
            try:
                result = await scheduler.select_destinations(spec)
            except NoValidHost:
                outcomes[uuid] = "NoValidHost"
            else:
                outcomes[uuid] = result["host"]
                live.append(uuid)

    try:
        await asyncio.gather(*(worker() for _ in range(workers)))
        nodes = {n["host"]: n for n in await db.list_compute_nodes()}
        allocs = await db.allocations_by_host()
    finally:
        await scheduler.stop()
        await db.close()

    assert all(v != "pending" for v in outcomes.values())
    placed = {u: h for u, h in outcomes.items() if h != "NoValidHost"}
    for host, node in nodes.items():
        assert node["vcpus_used"] <= node["vcpus"] * node["cpu_allocation_ratio"]
        assert node["memory_mb_used"] <= node["memory_mb"] * node["ram_allocation_ratio"]
        assert node["local_gb_used"] <= node["local_gb"] * node["disk_allocation_ratio"]
        assert min(node["vcpus_used"], node["memory_mb_used"], node["local_gb_used"], node["running_vms"]) >= 0
        assert node["running_vms"] == len(allocs.get(host, []))
    on_hosts = {u: h for h, us in allocs.items() for u in us}
    assert set(on_hosts) == set(live)  # NoValidHost left nothing behind, deletes freed theirs
    for u in live:
        assert on_hosts[u] == placed[u]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(algorithm=st.sampled_from(sorted(load_all())), workers=st.integers(2, 8),
       ratio=st.sampled_from([1.0, 1.5]), plan=ops)
def test_concurrent_boots_and_deletes_never_overcommit(algorithm, workers, ratio, plan):
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp), algorithm, workers, ratio, plan))


def test_a_full_cloud_answers_no_valid_host_and_a_burst_fills_it_exactly():
    """40 concurrent 8 GB boots on 48 GB of RAM: exactly 6 fit (RAM is the limit), the rest fail."""
    plan = [("boot", 3)] * 40
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_count_burst(Path(tmp), plan))


async def _count_burst(tmp: Path, plan) -> None:
    outcomes: list[str] = []
    s = Settings(run_dir=tmp, profile="zero", seed=3, scheduler="filter_scheduler", scheduler_workers=4,
                 host_groups=GROUPS)
    db = NovaDB(s.effective_db_url())
    await db.create_schema()
    ctx = CloudContext(settings=s, telemetry=Telemetry(run_dir=None, enabled=False, use_env_otlp=False),
                       latency=LatencyModel(load_profile("zero"), seed=3), transport=MemoryTransport(), db=db)
    await db.seed([FakeHost(n, g, s, None, None).row for n, g in host_names(s.effective_host_groups())])
    scheduler = NovaScheduler(ctx)
    await scheduler.start()

    async def boot(i: int) -> None:
        spec = {"instance_uuid": f"b{i}", "vcpus": 4, "memory_mb": 8192, "disk_gb": 80}
        try:
            outcomes.append((await scheduler.select_destinations(spec))["host"])
        except NoValidHost:
            outcomes.append("NoValidHost")

    try:
        await asyncio.gather(*(boot(i) for i in range(len(plan))))
    finally:
        await scheduler.stop()
        await db.close()
    placed = [o for o in outcomes if o != "NoValidHost"]
    # small hosts: 8 GB RAM, 100 GB disk -> 1 each; big: 16 GB, 200 GB -> 2 each
    assert sorted(placed) == ["big-1", "big-1", "big-2", "big-2", "small-1", "small-2"]
    assert outcomes.count("NoValidHost") == 34
