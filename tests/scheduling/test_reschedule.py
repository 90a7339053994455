"""A build that fails on its host is rescheduled to the scheduler's alternates, up to
``max_attempts``; the failure counts against the host (BuildFailureWeigher)."""

from __future__ import annotations

from harness.client import OpenStackClient
from harness.config import HostGroup
from harness.services.nova_compute import BuildError

CIRROS = "cirros-0.6.2-x86_64-disk"


def break_host(cloud, name: str) -> None:
    async def refuse(instance_uuid, image):
        raise BuildError(f"hypervisor on {name} refused the guest")

    cloud.service("nova-compute").hosts[name].driver.spawn = refuse


async def boot(cloud, client, name: str) -> tuple[dict, str | None]:
    image = next(i["id"] for i in await client.images() if i["name"] == CIRROS)
    server = await client.create_server(name, flavor="1", image=image)
    done = await client.wait_for_status(server["id"], timeout=60)
    return done, (await cloud.db.get_instance(server["id"]))["host"]


async def test_a_failed_build_moves_to_an_alternate_and_the_host_goes_to_the_back(make_cloud):
    async with make_cloud(host_groups=[HostGroup(count=3, vcpus=8, memory_mb=16384)], max_attempts=3) as cloud:
        break_host(cloud, "compute-1")  # the filter scheduler's first choice among equal hosts
        async with OpenStackClient(cloud.auth_url) as client:
            first, host1 = await boot(cloud, client, "a")
            second, host2 = await boot(cloud, client, "b")
        nodes = {n["host"]: n for n in await cloud.db.list_compute_nodes()}
    assert first["status"] == "ACTIVE" and host1 == "compute-2"
    assert nodes["compute-1"]["failed_builds"] == 1 and nodes["compute-1"]["running_vms"] == 0
    assert second["status"] == "ACTIVE" and host2 == "compute-3"  # spread, compute-1 weighed last


async def test_max_attempts_ends_in_error(make_cloud):
    async with make_cloud(host_groups=[HostGroup(count=3, vcpus=8, memory_mb=16384)], max_attempts=2) as cloud:
        for name in ("compute-1", "compute-2"):
            break_host(cloud, name)
        async with OpenStackClient(cloud.auth_url) as client:
            done, host = await boot(cloud, client, "a")
        nodes = await cloud.db.list_compute_nodes()
    assert done["status"] == "ERROR" and host is None
    assert "Exceeded maximum number of retries" in done["fault"]["message"]
    assert sum(n["running_vms"] for n in nodes) == 0 and sum(n["memory_mb_used"] for n in nodes) == 0


async def test_one_attempt_means_no_alternates(make_cloud):
    async with make_cloud(host_groups=[HostGroup(count=2, vcpus=8, memory_mb=16384)], max_attempts=1) as cloud:
        break_host(cloud, "compute-1")
        async with OpenStackClient(cloud.auth_url) as client:
            done, _ = await boot(cloud, client, "a")
    assert done["status"] == "ERROR" and "aborted" in done["fault"]["message"]
