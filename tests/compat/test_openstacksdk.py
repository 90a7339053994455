"""openstacksdk (and keystoneauth1 under it) against the embedded cloud, as a user drives it.

Each test runs a whole scenario in a worker thread (the SDK is synchronous) while the cloud serves
from pytest's loop, then stops the cloud (which flushes the spans) and checks that every boot the
SDK made still left its full trace: steps 3..29 in one trace, and the SDK's password auth as steps
1-2.
"""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from openstack import exceptions as sdk_exc

from harness.config import HostGroup
from tests.compat.helpers import CIRROS, WAIT_S, assert_auth_steps, assert_boot_trace, connect_cloud
from tests.spanfile import boot_traces, read_spans

pytestmark = pytest.mark.timeout(600)


def _spans(cloud):
    return read_spans(cloud.run_dir / "spans.jsonl")


async def test_boot_list_show_delete(make_cloud):
    async with make_cloud(hosts=4) as cloud:
        def scenario() -> list[str]:
            conn = connect_cloud(cloud)
            images = {i.name: i for i in conn.image.images()}
            cirros = images[CIRROS]
            assert cirros.status == "active" and cirros.size > 0 and cirros.disk_format == "qcow2"
            nets = {n.name: n for n in conn.network.networks()}
            net = nets["private"]
            subnet = conn.network.get_subnet(net.subnet_ids[0])
            flavors = {f.name: f for f in conn.compute.flavors()}
            assert flavors["m1.tiny"].ram == 512 and flavors["m1.tiny"].vcpus == 1
            created = [conn.compute.create_server(
                name=f"sdk-{i}", flavor_id=flavors["m1.tiny"].id, image_id=cirros.id,
                networks=[{"uuid": net.id}], metadata={"purpose": "compat"},
            ) for i in range(3)]
            for server in created:
                conn.compute.wait_for_server(server, wait=WAIT_S, interval=0.2)
            ids = [s.id for s in created]

            got = conn.compute.get_server(ids[0])
            assert got.status == "ACTIVE" and got.vm_state == "active" and got.task_state is None
            assert got.power_state == 1 and got.progress == 100
            assert got.flavor.original_name == "m1.tiny" and got.image.id == cirros.id
            assert got.metadata == {"purpose": "compat"} and got.created_at and got.updated_at
            assert got.compute_host is None  # OS-EXT-SRV-ATTR:host is for admins only
            (addr,) = got.addresses["private"]
            assert ipaddress.ip_address(addr["addr"]) in ipaddress.ip_network(subnet.cidr)
            (port,) = conn.network.ports(device_id=got.id)
            assert port.fixed_ips[0]["ip_address"] == addr["addr"]
            assert port.mac_address == addr["OS-EXT-IPS-MAC:mac_addr"]

            admin = connect_cloud(cloud, "admin")
            assert admin.compute.get_server(got.id).compute_host.startswith("compute-")

            listed = {s.id for s in conn.compute.servers()}
            assert set(ids) <= listed
            paged = [s.id for s in conn.compute.servers(limit=1)]  # one per page, links followed
            assert sorted(paged) == sorted(ids)
            assert [s.name for s in conn.compute.servers(name="^sdk-1$")] == ["sdk-1"]
            assert {s.id for s in conn.compute.servers(status="ACTIVE")} == set(ids)

            for server in created:
                conn.compute.delete_server(server)
            for server in created:
                conn.compute.wait_for_delete(server, wait=WAIT_S, interval=0.2)
            with pytest.raises(sdk_exc.NotFoundException):
                conn.compute.get_server(ids[0])
            assert [p for p in conn.network.ports() if p.device_id in ids] == []
            return ids

        ids = await asyncio.to_thread(scenario)
    spans = _spans(cloud)
    boots = boot_traces(spans)
    for server_id in ids:
        assert_boot_trace(boots[server_id])
    assert_auth_steps(spans)


async def test_boot_from_volume(make_cloud):
    async with make_cloud(hosts=2) as cloud:
        def scenario() -> list[str]:
            conn = connect_cloud(cloud)
            cirros = conn.image.find_image(CIRROS)
            net = conn.network.find_network("private")
            ids = []
            for keep in (False, True):  # delete_on_termination True, then False
                vol = conn.block_storage.create_volume(size=1, image_id=cirros.id, name=f"boot-{keep}")
                vol = conn.block_storage.wait_for_status(vol, "available", wait=WAIT_S, interval=0.2)
                assert vol.is_bootable
                server = conn.compute.create_server(
                    name=f"bfv-{keep}", flavor_id="1", networks=[{"uuid": net.id}],
                    block_device_mapping=[{"boot_index": 0, "uuid": vol.id, "source_type": "volume",
                                           "destination_type": "volume", "delete_on_termination": not keep}],
                )
                server = conn.compute.wait_for_server(server, wait=WAIT_S, interval=0.2)
                assert not server.image  # booted from the volume: Nova shows "image": ""
                assert [v["id"] for v in server.attached_volumes] == [vol.id]
                vol = conn.block_storage.get_volume(vol.id)
                assert vol.status == "in-use"
                assert [a["server_id"] for a in vol.attachments] == [server.id]
                conn.compute.delete_server(server)
                conn.compute.wait_for_delete(server, wait=WAIT_S, interval=0.2)
                if keep:
                    vol = conn.block_storage.wait_for_status(vol, "available", wait=WAIT_S, interval=0.2)
                    assert vol.attachments == []
                    conn.block_storage.delete_volume(vol)
                conn.block_storage.wait_for_delete(vol, wait=WAIT_S, interval=0.2)
                ids.append(server.id)
            return ids

        ids = await asyncio.to_thread(scenario)
    boots = boot_traces(_spans(cloud))
    for server_id in ids:
        assert_boot_trace(boots[server_id])


async def test_actions_and_admin_views(make_cloud):
    async with make_cloud(hosts=3) as cloud:
        def scenario() -> None:
            conn, admin = connect_cloud(cloud), connect_cloud(cloud, "admin")
            server = conn.compute.create_server(
                name="acts", flavor_id="1", image_id=conn.image.find_image(CIRROS).id, networks="auto")
            conn.compute.wait_for_server(server, wait=WAIT_S, interval=0.2)
            conn.compute.stop_server(server)
            stopped = conn.compute.wait_for_server(server, status="SHUTOFF", wait=WAIT_S, interval=0.2)
            assert stopped.power_state == 4
            with pytest.raises(sdk_exc.ConflictException):
                conn.compute.stop_server(server)  # already stopped: 409
            conn.compute.start_server(server)
            conn.compute.wait_for_server(server, status="ACTIVE", wait=WAIT_S, interval=0.2)
            conn.compute.reboot_server(server, "SOFT")
            rebooted = conn.compute.wait_for_server(server, status="ACTIVE", wait=WAIT_S, interval=0.2)
            assert rebooted.task_state is None

            hypervisors = list(admin.compute.hypervisors(details=True))
            assert sorted(h.name for h in hypervisors) == ["compute-1", "compute-2", "compute-3"]
            with pytest.raises(sdk_exc.ForbiddenException):
                list(conn.compute.hypervisors())
            assert [z.name for z in conn.compute.availability_zones()] == ["nova"]
            limits = conn.compute.get_limits()
            assert limits.absolute.instances_used == 1 and limits.absolute.total_cores_used == 1

            project = conn.current_project_id
            assert conn.block_storage.get_limits().absolute.max_total_volumes == 10
            assert admin.block_storage.get_quota_set(project, usage=True).usage["volumes"] == 0
            assert conn.network.get_quota(project, details=True).ports["used"] == 1
            admin.compute.update_quota_set(project, instances=1)
            assert conn.compute.get_quota_set(project).instances == 1
            with pytest.raises(sdk_exc.ForbiddenException, match="Quota exceeded for instances"):
                conn.compute.create_server(name="over", flavor_id="1", networks="none",
                                           image_id=conn.image.find_image(CIRROS).id)
            conn.compute.delete_server(server)
            conn.compute.wait_for_delete(server, wait=WAIT_S, interval=0.2)

        await asyncio.to_thread(scenario)


async def test_no_valid_host_shows_the_fault(make_cloud):
    async with make_cloud(host_groups=[HostGroup(count=2, memory_mb=4096)]) as cloud:
        def scenario() -> None:
            conn, admin = connect_cloud(cloud), connect_cloud(cloud, "admin")
            server = conn.compute.create_server(  # m1.xlarge wants 16 GiB: no host has it
                name="too-big", flavor_id="5", image_id=conn.image.find_image(CIRROS).id, networks="none")
            with pytest.raises(sdk_exc.ResourceFailure):
                conn.compute.wait_for_server(server, wait=WAIT_S, interval=0.2)
            got = conn.compute.get_server(server.id)
            assert got.status == "ERROR" and got.vm_state == "error" and got.task_state is None
            assert got.fault["code"] == 500 and "No valid host was found" in got.fault["message"]
            assert got.fault["created"] and admin.compute.get_server(server.id).compute_host is None
            conn.compute.delete_server(server)  # never reached a host: nova-api deletes it itself
            conn.compute.wait_for_delete(server, wait=WAIT_S, interval=0.2)

        await asyncio.to_thread(scenario)
