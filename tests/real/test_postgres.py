"""Nova's DB on PostgreSQL: the same schema and statements as SQLite, atomic claims under real
concurrency, and whole boots on RabbitMQ + PostgreSQL with the right DB and messaging spans."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from harness.client import OpenStackClient
from harness.config import HostGroup
from harness.db import NovaDB, Resources
from tests.cloud.test_boot_flow import assert_complete_boot
from tests.spanfile import boot_traces, read_spans


def _node(host: str, vcpus: int) -> dict:
    return dict(host=host, vcpus=vcpus, memory_mb=65536, local_gb=1000, cpu_allocation_ratio=1.0,
                ram_allocation_ratio=1.0, disk_allocation_ratio=1.0, availability_zone="nova",
                arch="x86_64", vcpus_used=0, memory_mb_used=0, local_gb_used=0, running_vms=0,
                disabled=False, failed_builds=0, generation=0)


async def test_schema_seed_and_concurrent_claims_never_overcommit(db_url):
    dbs = [NovaDB(db_url, pool_size=4) for _ in range(3)]  # three "processes"
    try:
        # several processes creating the schema and seeding at once must not trip on each other
        await asyncio.gather(*(db.create_schema() for db in dbs))
        await asyncio.gather(*(db.seed([_node("compute-1", 4)]) for db in dbs))
        assert {f["name"] for f in await dbs[0].list_flavors()} >= {"m1.tiny", "m1.small"}
        assert [n["host"] for n in await dbs[0].list_compute_nodes()] == ["compute-1"]

        async def schedule(i: int) -> bool:
            """A scheduler's loop: read the host, claim at the generation read, retry if raced."""
            db = dbs[i % len(dbs)]
            for _ in range(50):
                node = next(n for n in await db.list_compute_nodes() if n["host"] == "compute-1")
                if node["vcpus_used"] + 1 > node["vcpus"]:
                    return False
                if await db.claim(f"inst-{i}", "compute-1", node["generation"], Resources(1, 512, 1), az="nova"):
                    return True
            raise AssertionError("claim kept losing races")

        won = await asyncio.gather(*(schedule(i) for i in range(12)))
        assert sum(won) == 4, won
        node = (await dbs[0].list_compute_nodes())[0]
        assert node["vcpus_used"] == 4 and node["running_vms"] == 4
        assert len((await dbs[0].allocations_by_host())["compute-1"]) == 4
    finally:
        for db in dbs:
            await db.close()


async def test_boots_on_rabbitmq_and_postgresql(make_cloud, amqp_url, db_url):
    cloud = make_cloud(transport_url=amqp_url, db_url=db_url, host_groups=[HostGroup(count=4)])
    async with cloud:
        async with OpenStackClient(cloud.auth_url) as client:
            await client.authenticate()
            image = next(i["id"] for i in await client.images() if i["name"].startswith("cirros"))
            servers = await asyncio.gather(*(client.create_server(f"pg-{i}", image=image) for i in range(5)))
            finals = await asyncio.gather(*(client.wait_for_status(s["id"], timeout=60, interval=0.2)
                                            for s in servers))
        assert [f["status"] for f in finals] == ["ACTIVE"] * 5, [f.get("fault") for f in finals]
    spans = read_spans(cloud.run_dir / "spans.jsonl")
    boots = boot_traces(spans)
    assert set(boots) == {s["id"] for s in servers}
    pg = urlsplit(db_url)
    for trace in boots.values():
        assert_complete_boot(trace)
        step7 = next(s for s in trace if s.step == 7)
        assert step7.attrs["db.system.name"] == "postgresql"
        assert step7.attrs["server.address"] == pg.hostname
        assert step7.attrs["server.port"] == (pg.port or 5432)
        for s in trace:
            if s.step in (8, 9, 12, 13, 14, 15, 18, 19):
                assert s.attrs["messaging.system"] == "rabbitmq", (s.step, s.name)
