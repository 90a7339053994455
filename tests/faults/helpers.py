"""What the fault tests share: an admin client, booting many servers, waiting for them through the
list API, and checking that no host, hypervisor or port keeps anything of a dead server."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from harness.client import CloudError, OpenStackClient
from harness.cloud import EmbeddedCloud

CIRROS = "cirros-0.6.2-x86_64-disk"
FINAL = ("ACTIVE", "ERROR")


async def authenticated(cloud: EmbeddedCloud, *, user: str = "demo", password: str | None = None,
                        project: str | None = None, attempts: int = 30) -> OpenStackClient:
    """A client with a token, retrying while faults make Keystone fail (steps 1-2)."""
    client = OpenStackClient(cloud.auth_url, username=user, password=password or user,
                             project=project or user, timeout=60)
    for i in range(attempts):
        try:
            await client.authenticate()
            return client
        except CloudError as exc:
            if exc.status < 500 or i == attempts - 1:
                await client.close()
                raise
            await asyncio.sleep(0.05)
    raise AssertionError("unreachable")


@asynccontextmanager
async def users(cloud: EmbeddedCloud) -> AsyncIterator[tuple[OpenStackClient, OpenStackClient]]:
    """(demo, admin) clients with tokens, closed on exit."""
    client = await authenticated(cloud)
    try:
        admin = await authenticated(cloud, user="admin")
    except BaseException:
        await client.close()
        raise
    try:
        yield client, admin
    finally:
        await client.close()
        await admin.close()


async def eventually(check: Any, *, timeout: float = 15.0, interval: float = 0.2) -> Any:
    """Await ``check()`` until it returns without an AssertionError (the last one is raised)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval)


async def set_fault(admin: OpenStackClient, spec: dict[str, Any]) -> dict[str, Any]:
    resp = await admin.request("POST", "compute", "/os-harness-faults", json={"fault": spec})
    assert resp.status_code == 201, resp.text
    return resp.json()["fault"]


async def fault_list(admin: OpenStackClient) -> list[dict[str, Any]]:
    resp = await admin.request("GET", "compute", "/os-harness-faults")
    assert resp.status_code == 200, resp.text
    return resp.json()["faults"]


async def image_id(client: OpenStackClient, name: str = CIRROS) -> str:
    for _ in range(50):  # Glance's own door may be faulty: ask again
        resp = await client.request("GET", "image", "/v2/images")
        if resp.status_code == 200:
            return next(i["id"] for i in resp.json()["images"] if i["name"] == name)
        await asyncio.sleep(0.05)
    raise AssertionError(f"Glance never listed its images: {resp.status_code}")


@dataclass
class Attempt:
    """One POST /servers: when it was sent, what came back."""

    index: int
    sent: float  # time.monotonic()
    status: int = 0
    server_id: str | None = None
    body: Any = None
    final: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


async def post_boot(client: OpenStackClient, image: str, index: int) -> Attempt:
    att = Attempt(index, time.monotonic())
    resp = await client.request("POST", "compute", "/servers", json={"server": {
        "name": f"f-{index}", "flavorRef": "1", "imageRef": image}})
    att.status = resp.status_code
    try:
        att.body = resp.json()
    except ValueError:
        att.body = resp.text
    if resp.status_code == 202:
        att.server_id = att.body["server"]["id"]
    return att


async def boot_many(client: OpenStackClient, image: str, count: int, concurrency: int) -> list[Attempt]:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Attempt:
        async with sem:
            return await post_boot(client, image, i)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def all_servers(client: OpenStackClient) -> dict[str, dict[str, Any]]:
    """Every server of the client's project, by id (one list call; retried on a 5xx)."""
    for _ in range(100):
        resp = await client.request("GET", "compute", "/servers/detail", params={"limit": "1000"})
        if resp.status_code == 200:
            return {s["id"]: s for s in resp.json()["servers"]}
        assert resp.status_code >= 500, resp.text
        await asyncio.sleep(0.1)
    raise AssertionError("nova-api never listed the servers")


async def wait_final(client: OpenStackClient, ids: list[str], *, timeout: float, interval: float = 0.5
                     ) -> dict[str, dict[str, Any]]:
    """Poll the list until every server in ``ids`` is ACTIVE or ERROR; returns them."""
    deadline = time.monotonic() + timeout
    while True:
        servers = await all_servers(client)
        missing = [i for i in ids if i not in servers]
        assert not missing, f"{len(missing)} accepted servers vanished, e.g. {missing[:3]}"
        pending = [i for i in ids if servers[i]["status"] not in FINAL]
        if not pending:
            return {i: servers[i] for i in ids}
        if time.monotonic() > deadline:
            states = sorted({servers[i]["status"] for i in pending})
            raise AssertionError(f"{len(pending)} boots not ACTIVE/ERROR after {timeout} s ({states}), "
                                 f"e.g. {pending[:3]}")
        await asyncio.sleep(interval)


async def delete_all(client: OpenStackClient, ids: list[str], *, timeout: float = 60) -> None:
    sem = asyncio.Semaphore(50)

    async def one(sid: str) -> None:
        async with sem:
            for _ in range(20):
                resp = await client.request("DELETE", "compute", f"/servers/{sid}")
                if resp.status_code in (204, 404):
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"DELETE {sid}: {resp.status_code} {resp.text}")

    await asyncio.gather(*(one(s) for s in ids))
    deadline = time.monotonic() + timeout
    while set(ids) & set(await all_servers(client)):
        assert time.monotonic() < deadline, "servers still listed after their delete"
        await asyncio.sleep(0.25)


async def resources(cloud: EmbeddedCloud) -> dict[str, Any]:
    """What every layer holds: DB allocations and usage, hypervisor VMs, Neutron ports."""
    assert cloud.db is not None
    compute = cloud.service("nova-compute")
    neutron = cloud.service("neutron-server")
    nodes = {n["host"]: n for n in await cloud.db.list_compute_nodes()}
    return {
        "allocations": await cloud.db.allocations_by_host(),
        "nodes": nodes,
        "vms": {name: set(h.driver.instances) for name, h in compute.hosts.items()},  # type: ignore[attr-defined]
        "ports": {p["id"]: p for p in neutron.plugin.ports.values()  # type: ignore[attr-defined]
                  if p.get("device_owner") == "compute:nova"},
        "instances": {i["uuid"]: i for i in await cloud.db.list_instances(project_id=None)},
    }


async def assert_no_leaks(cloud: EmbeddedCloud) -> dict[str, Any]:
    """No host, hypervisor or port keeps anything of a server that is not ACTIVE (or building)."""
    r = await resources(cloud)
    live = {u for u, i in r["instances"].items() if i["vm_state"] in ("active", "building")}
    active_on = {}
    for u, i in r["instances"].items():
        if i["vm_state"] == "active":
            active_on.setdefault(i["host"], set()).add(u)
    for host, uuids in r["allocations"].items():
        dead = set(uuids) - live
        assert not dead, f"{host} keeps allocations of dead servers {sorted(dead)[:3]}"
    usage = {h: 0 for h in r["nodes"]}
    for host, uuids in r["allocations"].items():
        usage[host] = len(uuids)
    for host, node in r["nodes"].items():
        assert node["running_vms"] == usage[host], (host, node["running_vms"], usage[host])
        if usage[host] == 0:
            assert (node["vcpus_used"], node["memory_mb_used"], node["local_gb_used"]) == (0, 0, 0), node
    for host, vms in r["vms"].items():
        extra = vms - active_on.get(host, set())
        assert not extra, f"the hypervisor of {host} still runs VMs of dead servers {sorted(extra)[:3]}"
    for port in r["ports"].values():
        assert port["device_id"] in live, f"port {port['id']} still bound to dead server {port['device_id']}"
    return r
