"""Bad input gets an OpenStack error body with the right 4xx, never a 500; failed steps end in ERROR."""

from __future__ import annotations

import asyncio

import aiohttp

from harness.client import OpenStackClient
from harness.services.http import MAX_BODY_BYTES


async def _raw(method: str, url: str, **kw):
    async with aiohttp.ClientSession() as s:
        async with s.request(method, url, **kw) as r:
            text = await r.text()
            try:
                body = await r.json(content_type=None)
            except ValueError:
                body = None
            return r.status, body, text


async def test_missing_and_invalid_tokens(cloud):
    nova = cloud.settings.endpoint("nova") + "/v2.1"
    status, body, _ = await _raw("GET", f"{nova}/servers")
    assert status == 401 and body["unauthorized"]["code"] == 401
    status, body, _ = await _raw("GET", f"{nova}/servers", headers={"X-Auth-Token": "not-a-token"})
    assert status == 401 and "message" in body["unauthorized"]
    status, body, _ = await _raw("GET", cloud.settings.endpoint("neutron") + "/v2.0/networks")
    assert status == 401 and body["NeutronError"]["type"] == "HTTPUnauthorized"


async def test_bad_credentials_get_keystone_error(cloud):
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "demo", "domain": {"id": "default"}, "password": "wrong"}}}}}
    status, resp, _ = await _raw("POST", cloud.auth_url + "/auth/tokens", json=body)
    assert status == 401 and resp["error"]["code"] == 401 and resp["error"]["title"] == "Unauthorized"
    status, resp, _ = await _raw("POST", cloud.auth_url + "/auth/tokens", data=b"{not json",
                                 headers={"Content-Type": "application/json"})
    assert status == 400 and resp["error"]["code"] == 400


async def test_expired_token_is_refused(make_cloud):
    async with make_cloud(token_ttl=1) as cloud:
        async with OpenStackClient(cloud.auth_url) as client:
            token = await client.authenticate()
            await asyncio.sleep(1.5)
            status, body, _ = await _raw("GET", cloud.settings.endpoint("nova") + "/v2.1/servers",
                                         headers={"X-Auth-Token": token})
    assert status == 401 and body["unauthorized"]["code"] == 401


async def test_create_server_rejections(cloud):
    async with OpenStackClient(cloud.auth_url) as client:
        await client.authenticate()
        token = client.token
        images = await client.images()
        image = next(i["id"] for i in images if i["name"].startswith("cirros"))
        big = next(i for i in images if i["min_disk"] > 1)
    url = cloud.settings.endpoint("nova") + "/v2.1/servers"
    hdr = {"X-Auth-Token": token, "Content-Type": "application/json"}

    async def post(data: bytes | dict) -> tuple[int, dict]:
        kw = {"data": data} if isinstance(data, bytes) else {"json": data}
        status, body, text = await _raw("POST", url, headers=hdr, **kw)
        assert body is not None, text
        return status, body

    cases = [
        (b"{oops", 400, "badRequest"),
        (b"[1, 2]", 400, "badRequest"),
        ({"server": {"name": "x", "imageRef": image}}, 400, "badRequest"),  # no flavorRef
        ({"server": {"name": "x", "flavorRef": "999", "imageRef": image}}, 400, "badRequest"),
        ({"server": {"name": "x", "flavorRef": "1", "imageRef": "not-a-uuid"}}, 400, "badRequest"),
        ({"server": {"name": "x", "flavorRef": "1",
                     "imageRef": "8c9a7f9e-0000-4000-8000-000000000000"}}, 400, "badRequest"),
        ({"server": {"name": "x", "flavorRef": "1", "imageRef": image,
                     "networks": [{"uuid": "8c9a7f9e-0000-4000-8000-000000000001"}]}}, 400, "badRequest"),
        ({"server": {"name": "", "flavorRef": "1", "imageRef": image}}, 400, "badRequest"),
        ({"server": {"name": "x", "flavorRef": "1", "imageRef": big["id"]}}, 400, "badRequest"),
    ]
    for payload, code, kind in cases:
        status, body = await post(payload)
        assert status == code, (payload, status, body)
        assert body[kind]["code"] == code and body[kind]["message"], body
    status, body, _ = await _raw("POST", url, headers=hdr, data=b"x" * (MAX_BODY_BYTES + 1))
    assert status == 413 and body["overLimit"]["code"] == 413


async def test_unknown_server_and_route(cloud):
    async with OpenStackClient(cloud.auth_url) as client:
        await client.authenticate()
        resp = await client.request("GET", "compute", "/servers/3f1f9b8e-0000-4000-8000-00000000abcd")
        assert resp.status_code == 404 and resp.json()["itemNotFound"]["code"] == 404
        resp = await client.request("GET", "compute", "/servers/not-a-uuid")
        assert resp.status_code == 404
        resp = await client.request("GET", "compute", "/no-such-thing")
        assert resp.status_code == 404 and "itemNotFound" in resp.json()
        resp = await client.request("PATCH", "compute", "/servers")
        assert resp.status_code == 405


async def test_failing_step_leaves_server_in_error(make_cloud, tmp_path):
    # A profile that holds step 13 long enough to make the image vanish before step 20 reads it.
    profile = tmp_path / "slow13.toml"
    profile.write_text("default = 1\n[steps]\n13 = 300\n")
    async with make_cloud(profile=str(profile), max_attempts=1) as cloud:
        async with OpenStackClient(cloud.auth_url) as client:
            await client.authenticate()
            image = next(i["id"] for i in await client.images() if i["name"].startswith("cirros"))
            server = await client.create_server("vm", image=image)
            cloud.service("glance-api").images.pop(image)
            final = await client.wait_for_status(server["id"], timeout=30)
        nodes = await cloud.db.list_compute_nodes()
    assert final["status"] == "ERROR"
    assert "Image" in final["fault"]["message"]
    assert all(n["memory_mb_used"] == 0 for n in nodes)
