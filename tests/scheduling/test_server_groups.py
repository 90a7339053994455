"""Server groups through the API: ``/os-server-groups`` and the ``group`` hint, with concurrent
boots placed by the affinity / anti-affinity filters."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from harness.client import OpenStackClient
from harness.config import HostGroup

CIRROS = "cirros-0.6.2-x86_64-disk"
V264 = {"OpenStack-API-Version": "compute 2.64"}


async def create_group(client, body: dict, headers=V264):
    return await client.request("POST", "compute", "/os-server-groups", json={"server_group": body},
                                headers=dict(headers))


async def boot_members(cloud, client, group_id: str, n: int) -> list[tuple[str, str | None]]:
    """``n`` boots in the group at once; (status, host) of each."""
    image = next(i["id"] for i in await client.images() if i["name"] == CIRROS)

    async def one(i: int):
        resp = await client.request("POST", "compute", "/servers", json={
            "server": {"name": f"m{i}", "flavorRef": "1", "imageRef": image},
            "os:scheduler_hints": {"group": group_id}})
        assert resp.status_code == 202, resp.text
        server = resp.json()["server"]
        done = await client.wait_for_status(server["id"], timeout=60)
        return done["status"], (await cloud.db.get_instance(server["id"]))["host"], done.get("fault")

    return await asyncio.gather(*(one(i) for i in range(n)))


@pytest.mark.parametrize("scheduler", ["filter_scheduler", "pack", "random"])
async def test_anti_affinity_spreads_concurrent_members_and_refuses_one_too_many(make_cloud, scheduler):
    async with make_cloud(scheduler=scheduler, host_groups=[HostGroup(count=4, vcpus=8, memory_mb=16384)]) as cloud:
        async with OpenStackClient(cloud.auth_url) as client:
            resp = await create_group(client, {"name": "spread-me", "policy": "anti-affinity"})
            assert resp.status_code == 200, resp.text
            group = resp.json()["server_group"]
            results = await boot_members(cloud, client, group["id"], 5)
            show = (await client.request("GET", "compute", f"/os-server-groups/{group['id']}",
                                         headers=V264)).json()["server_group"]
    active = [h for status, h, _ in results if status == "ACTIVE"]
    errors = [f for status, _, f in results if status == "ERROR"]
    assert len(active) == 4 and len(set(active)) == 4, results
    assert len(errors) == 1 and "No valid host was found" in errors[0]["message"]
    assert len(show["members"]) == 5 and show["policy"] == "anti-affinity" and show["rules"] == {}


async def test_affinity_keeps_members_together_and_max_server_per_host(make_cloud):
    async with make_cloud(scheduler="spread", host_groups=[HostGroup(count=3, vcpus=8, memory_mb=16384)]) as cloud:
        async with OpenStackClient(cloud.auth_url) as client:
            together = (await create_group(client, {"name": "t", "policy": "affinity"})).json()["server_group"]
            results = await boot_members(cloud, client, together["id"], 4)
            assert {s for s, _, _ in results} == {"ACTIVE"}
            assert len({h for _, h, _ in results}) == 1, results
            two = (await create_group(client, {"name": "two", "policy": "anti-affinity",
                                               "rules": {"max_server_per_host": 2}})).json()["server_group"]
            results = await boot_members(cloud, client, two["id"], 7)
    hosts = [h for s, h, _ in results if s == "ACTIVE"]
    assert len(hosts) == 6 and all(hosts.count(h) == 2 for h in set(hosts)), results


async def test_server_group_api_shapes_and_errors(cloud):
    async with OpenStackClient(cloud.auth_url) as client:
        old = await create_group(client, {"name": "old", "policies": ["affinity"]}, headers={})
        assert old.status_code == 200
        assert set(old.json()["server_group"]) == {"id", "name", "policies", "members", "metadata"}
        mid = await create_group(client, {"name": "mid", "policies": ["soft-affinity"]},
                                 headers={"OpenStack-API-Version": "compute 2.15"})
        assert mid.status_code == 200 and mid.json()["server_group"]["project_id"]
        assert (await create_group(client, {"name": "x", "policies": ["soft-affinity"]}, headers={})).status_code == 400
        new = (await create_group(client, {"name": "new", "policy": "anti-affinity",
                                           "rules": {"max_server_per_host": 3}})).json()["server_group"]
        assert new["rules"] == {"max_server_per_host": 3} and "policies" not in new
        bad = await create_group(client, {"name": "x", "policy": "affinity", "rules": {"max_server_per_host": 2}})
        assert bad.status_code == 400 and "Only anti-affinity policy supports rules." in bad.text
        assert (await create_group(client, {"name": "x", "policy": "closest"})).status_code == 400
        assert (await create_group(client, {"name": "x", "policies": ["affinity"]})).status_code == 400  # 2.64
        listed = (await client.request("GET", "compute", "/os-server-groups?limit=2&offset=1")).json()
        assert [g["name"] for g in listed["server_groups"]] == ["mid", "new"]
        missing = str(uuid.uuid4())
        resp = await client.request("GET", "compute", f"/os-server-groups/{missing}")
        assert resp.status_code == 404 and f"Instance group {missing} could not be found." in resp.text
        image = next(i["id"] for i in await client.images() if i["name"] == CIRROS)
        resp = await client.request("POST", "compute", "/servers", json={"server": {
            "name": "s", "flavorRef": "1", "imageRef": image}, "os:scheduler_hints": {"group": missing}})
        assert resp.status_code == 400 and "could not be found" in resp.text
        assert (await client.request("DELETE", "compute", f"/os-server-groups/{new['id']}")).status_code == 204
        assert (await client.request("DELETE", "compute", f"/os-server-groups/{new['id']}")).status_code == 404
        for i in range(8):  # 2 left + 8 = the default quota of 10
            assert (await create_group(client, {"name": f"q{i}", "policy": "affinity"})).status_code == 200
        over = await create_group(client, {"name": "one-too-many", "policy": "affinity"})
        assert over.status_code == 403 and "Quota exceeded, too many server groups." in over.text
