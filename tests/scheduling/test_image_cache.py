"""The image cache as the scheduler sees it: compute reports a fetched image through the
conductor, and an algorithm that prefers warm hosts stops paying for downloads."""

from __future__ import annotations

import asyncio

import pytest

from harness.client import OpenStackClient
from harness.config import HostGroup
from harness.db import image_cache
from tests.spanfile import read_spans

CIRROS = "cirros-0.6.2-x86_64-disk"


async def boot_one_by_one(cloud, n: int) -> list[str]:
    async with OpenStackClient(cloud.auth_url) as client:
        image = next(i["id"] for i in await client.images() if i["name"] == CIRROS)
        hosts = []
        for i in range(n):
            server = await client.create_server(f"s{i}", flavor="1", image=image)
            done = await client.wait_for_status(server["id"], timeout=60)
            assert done["status"] == "ACTIVE", done.get("fault")
            hosts.append((await cloud.db.get_instance(server["id"]))["host"])
        return hosts


@pytest.mark.parametrize("scheduler, options, same_host", [
    ("image_affinity", {}, True),
    ("filter_scheduler", {"image_cache_weight_multiplier": 10}, True),
    ("spread", {}, False),
])
async def test_warm_hosts_are_preferred_only_by_cache_aware_algorithms(make_cloud, scheduler, options, same_host):
    cloud = make_cloud(scheduler=scheduler, scheduler_options=options,
                       host_groups=[HostGroup(count=4, vcpus=8, memory_mb=16384)])
    async with cloud:
        hosts = await boot_one_by_one(cloud, 3)
        image = next(iter(await cloud.db.list_instances(project_id=None)))["image_ref"]
        for _ in range(100):  # the report is a cast: give the conductor a moment
            cached = await image_cache.hosts_with(cloud.db, image)
            if set(cached) == set(hosts):
                break
            await asyncio.sleep(0.05)
    assert (len(set(hosts)) == 1) is same_host, hosts
    spans = read_spans(cloud.run_dir / "spans.jsonl")
    fetches = [s for s in spans if s.name == "nova.virt.image_cache.fetch"]
    assert len(fetches) == len(set(hosts))  # one download per host that ran the image
    spawns = sorted((s for s in spans if s.step == 29), key=lambda s: s.start)
    assert [s.attrs["openstack.image.cached"] for s in spawns] == [False, same_host, same_host]
    select = [s for s in spans if s.attrs.get("openstack.scheduler.chosen_host")]
    if scheduler != "spread":  # cache-aware algorithms say so on the scheduling span too
        assert [s.attrs["openstack.scheduler.image_cached"] for s in select][1:] == [True, True]
    assert set(cached) == set(hosts)  # every host that fetched the image reported it, once
