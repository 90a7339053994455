"""The scheduling span (step 10) and the claim span (step 11) record the decision."""

from __future__ import annotations

from harness.client import OpenStackClient
from harness.config import HostGroup
from tests.spanfile import read_spans

CIRROS = "cirros-0.6.2-x86_64-disk"


async def test_select_and_claim_spans_carry_the_decision(make_cloud):
    groups = [HostGroup(count=3, vcpus=8, memory_mb=16384), HostGroup(count=2, arch="aarch64", prefix="arm")]
    async with make_cloud(host_groups=groups, scheduler="filter_scheduler",
                          scheduler_options={"ram_weight_multiplier": -1.0}) as cloud:
        async with OpenStackClient(cloud.auth_url) as client:
            image = next(i["id"] for i in await client.images() if i["name"] == CIRROS)
            server = await client.create_server("traced", flavor="1", image=image)
            assert (await client.wait_for_status(server["id"]))["status"] == "ACTIVE"
            host = (await cloud.db.get_instance(server["id"]))["host"]
    spans = read_spans(cloud.run_dir / "spans.jsonl")
    select = [s for s in spans if s.step == 10]
    claim = [s for s in spans if s.step == 11]
    assert len(select) == 1 and len(claim) == 1
    a = select[0].attrs
    assert a["openstack.scheduler.algorithm"] == "filter_scheduler"
    assert a["openstack.scheduler.hosts_considered"] == 5
    assert a["openstack.scheduler.filters"] == [
        "placement=5", "ComputeFilter=5", "ImagePropertiesFilter=3", "ServerGroupAntiAffinityFilter=3",
        "ServerGroupAffinityFilter=3"]
    assert a["openstack.scheduler.hosts_passed"] == 3
    assert a["openstack.scheduler.chosen_host"] == host == a["openstack.scheduler.candidates"][0]
    assert len(a["openstack.scheduler.candidates"]) == 3  # chosen + max_attempts - 1 alternates
    assert isinstance(a["openstack.scheduler.chosen_weight"], float)
    assert a["openstack.scheduler.round"] == 1
    assert "openstack.scheduler.image_cached" not in a  # this algorithm does not read the cache
    assert a["openstack.scheduler.algorithm_ms"] >= 0
    assert claim[0].attrs["openstack.scheduler.claimed_host"] == host
    assert claim[0].attrs["openstack.scheduler.claim_conflicts"] == 0
