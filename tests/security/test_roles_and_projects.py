"""Roles are enforced and a project sees and deletes only its own servers (and volumes, ports)."""

from __future__ import annotations

import pytest

from harness.client import OpenStackClient
from tests.security.helpers import alt_accounts, raw, token

#: (method, path under the compute endpoint, body) that only an admin may call.
ADMIN_ONLY = [
    ("GET", "/os-hypervisors", None),
    ("GET", "/os-hypervisors/detail", None),
    ("GET", "/os-hypervisors/statistics", None),
    ("GET", "/os-hypervisors/{hypervisor}", None),
    ("GET", "/os-availability-zone/detail", None),
    ("GET", "/servers?all_tenants=1", None),
    ("GET", "/servers/detail?all_tenants=True", None),
    ("PUT", "/os-quota-sets/{project}", {"quota_set": {"instances": 1}}),
    ("DELETE", "/os-quota-sets/{project}", None),
    ("GET", "/os-harness-faults", None),
    ("POST", "/os-harness-faults", {"fault": {"service": "nova-api", "down": True}}),
    ("PUT", "/os-harness-faults", {"faults": []}),
    ("DELETE", "/os-harness-faults", None),
    ("GET", "/os-harness-faults/any", None),
    ("DELETE", "/os-harness-faults/any", None),
]


@pytest.fixture
async def two_projects(make_cloud):
    async with make_cloud(accounts=alt_accounts()) as cloud:
        demo = OpenStackClient(cloud.auth_url)
        alt = OpenStackClient(cloud.auth_url, username="alt", password="alt-pass-8f2c", project="alt")
        admin = OpenStackClient(cloud.auth_url, username="admin", password="admin", project="admin")
        for c in (demo, alt, admin):
            await c.authenticate()
        try:
            yield cloud, demo, alt, admin
        finally:
            for c in (demo, alt, admin):
                await c.close()


async def test_members_get_403_where_admins_get_in(two_projects):
    cloud, demo, alt, admin = two_projects
    nova = cloud.settings.endpoint("nova") + "/v2.1"
    hyp = (await admin.request("GET", "compute", "/os-hypervisors")).json()["hypervisors"][0]["id"]
    project = cloud.service("keystone").project_id("demo")  # type: ignore[attr-defined]
    assert (await raw("GET", f"{nova}/os-harness-faults", headers={"X-Auth-Token": admin.token}))[0] == 200
    for method, path, body in ADMIN_ONLY:
        url = nova + path.format(hypervisor=hyp, project=project)
        kw = {"json": body} if body is not None else {}
        status, resp, text = await raw(method, url, headers={"X-Auth-Token": demo.token}, **kw)
        assert status == 403 and resp["forbidden"]["code"] == 403, (method, path, status, text)
    # after the refusals: nothing was changed by them
    assert (await admin.request("GET", "compute", "/os-harness-faults")).json()["faults"] == []
    # Keystone: listing projects, another user's record
    ks = cloud.auth_url
    status, _, _ = await raw("GET", f"{ks}/projects", headers={"X-Auth-Token": demo.token})
    assert status == 403
    admin_id = cloud.service("keystone").users["admin"].id  # type: ignore[attr-defined]
    status, _, _ = await raw("GET", f"{ks}/users/{admin_id}", headers={"X-Auth-Token": demo.token})
    assert status == 403
    # a member may not validate someone else's token
    status, _, _ = await raw("GET", f"{ks}/auth/tokens",
                             headers={"X-Auth-Token": demo.token, "X-Subject-Token": alt.token})
    assert status == 403
    # the admin may do each (a spot check of the same routes)
    for path in ("/os-hypervisors/detail", "/os-availability-zone/detail", "/servers?all_tenants=1"):
        assert (await raw("GET", nova + path, headers={"X-Auth-Token": admin.token}))[0] == 200


async def test_a_project_sees_and_deletes_only_its_own_servers(two_projects):
    cloud, demo, alt, admin = two_projects
    image = next(i["id"] for i in await demo.images() if i["name"].startswith("cirros"))
    mine = (await demo.create_server("mine", image=image))["id"]
    theirs = (await alt.create_server("theirs", image=image))["id"]
    await demo.wait_for_status(mine, timeout=30)
    await alt.wait_for_status(theirs, timeout=30)
    nova = cloud.settings.endpoint("nova") + "/v2.1"
    h = {"X-Auth-Token": alt.token}
    # not visible: show, list (with or without filters naming the other project), actions, delete
    assert (await raw("GET", f"{nova}/servers/{mine}", headers=h))[0] == 404
    demo_project = cloud.service("keystone").project_id("demo")  # type: ignore[attr-defined]
    for q, seen in (("", [theirs]), ("?project_id=" + demo_project, [theirs]), ("?name=mine", [])):
        status, body, _ = await raw("GET", f"{nova}/servers/detail{q}", headers=h)
        assert status == 200 and [s["id"] for s in body["servers"]] == seen, q
    status, _, _ = await raw("POST", f"{nova}/servers/{mine}/action", headers=h, json={"os-stop": None})
    assert status == 404
    assert (await raw("DELETE", f"{nova}/servers/{mine}", headers=h))[0] == 404
    assert (await demo.get_server(mine))["status"] == "ACTIVE"  # still there, untouched
    # the admin sees both, and may act on another project's server
    status, body, _ = await raw("GET", f"{nova}/servers?all_tenants=1", headers={"X-Auth-Token": admin.token})
    assert {mine, theirs} <= {s["id"] for s in body["servers"]}
    assert (await raw("GET", f"{nova}/servers/{mine}", headers={"X-Auth-Token": admin.token}))[0] == 200
    # the owner deletes its own
    await demo.delete_server(mine)
    await demo.wait_for_delete(mine, timeout=30)
    await alt.delete_server(theirs)


async def test_volumes_and_ports_of_another_project_stay_out_of_reach(two_projects):
    cloud, demo, alt, admin = two_projects
    demo_project = cloud.service("keystone").project_id("demo")  # type: ignore[attr-defined]
    cinder = cloud.settings.endpoint("cinder") + f"/v3/{demo_project}"
    hd = {"X-Auth-Token": demo.token}
    status, body, text = await raw("POST", f"{cinder}/volumes", headers=hd, json={"volume": {"size": 1, "name": "v"}})
    assert status == 202, text
    vol = body["volume"]["id"]
    ha = {"X-Auth-Token": alt.token}
    status, _, _ = await raw("GET", f"{cinder}/volumes/{vol}", headers=ha)
    assert status in (400, 403, 404)
    assert (await raw("DELETE", f"{cinder}/volumes/{vol}", headers=ha))[0] in (400, 403, 404)
    alt_project = cloud.service("keystone").project_id("alt")  # type: ignore[attr-defined]
    alt_cinder = cloud.settings.endpoint("cinder") + f"/v3/{alt_project}"
    assert (await raw("GET", f"{alt_cinder}/volumes/{vol}", headers=ha))[0] == 404
    # a port of demo's network allocation is not alt's to see or delete
    neutron = cloud.settings.endpoint("neutron") + "/v2.0"
    net = (await raw("GET", f"{neutron}/networks", headers=hd))[1]["networks"][0]["id"]
    status, body, text = await raw("POST", f"{neutron}/ports", headers=hd, json={"port": {"network_id": net}})
    assert status == 201, text
    port = body["port"]["id"]
    assert (await raw("GET", f"{neutron}/ports/{port}", headers=ha))[0] == 404
    assert (await raw("DELETE", f"{neutron}/ports/{port}", headers=ha))[0] == 404
    assert port not in {p["id"] for p in (await raw("GET", f"{neutron}/ports", headers=ha))[1]["ports"]}
    assert (await raw("GET", f"{neutron}/ports/{port}", headers=hd))[0] == 200
