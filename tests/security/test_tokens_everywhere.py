"""Every endpoint but version discovery needs a valid, unexpired token, on every service."""

from __future__ import annotations

import asyncio

from tests.security.helpers import PUBLIC, operations, raw, token

UNAUTHORIZED_SHAPES = {
    "keystone": lambda b: b["error"]["code"] == 401,
    "nova": lambda b: b["unauthorized"]["code"] == 401,
    "cinder": lambda b: b["unauthorized"]["code"] == 401,
    "neutron": lambda b: b["NeutronError"]["type"] == "HTTPUnauthorized",
    "glance": lambda b: True,  # webob's HTML body
}


async def _refused_without(cloud, headers: dict[str, str]) -> list[str]:
    """Every non-public operation called with ``headers``: those not answering 401."""
    wrong = []
    for op in await operations(cloud):
        if (op.service, op.method, op.path) in PUBLIC:
            continue
        kw = {"json": {}} if op.method in ("POST", "PUT", "PATCH") else {}
        status, body, text = await raw(op.method, op.url(), headers=headers, **kw)
        if status != 401 or (op.method != "HEAD" and not UNAUTHORIZED_SHAPES[op.service](body)):
            wrong.append(f"{op.method} {op.service}{op.path}: {status} {text[:120]}")
    return wrong


async def test_only_the_public_routes_answer_without_a_token(cloud):
    ops = await operations(cloud)
    public = {(o.service, o.method, o.path) for o in ops} & PUBLIC
    assert len(ops) > 50 and len(public) >= 10
    assert await _refused_without(cloud, {}) == []
    for op in ops:  # and the public ones do answer without one
        if (op.service, op.method, op.path) in PUBLIC and op.method == "GET":
            status, _, _ = await raw("GET", op.url())
            assert status in (200, 300), (op, status)


async def test_a_made_up_token_is_refused_everywhere(cloud):
    assert await _refused_without(cloud, {"X-Auth-Token": "gAAAAABnot-a-real-token"}) == []


async def test_a_revoked_token_is_refused(cloud):
    tok = await token(cloud, "demo")
    nova = cloud.settings.endpoint("nova") + "/v2.1/servers"
    assert (await raw("GET", nova, headers={"X-Auth-Token": tok}))[0] == 200
    status, _, _ = await raw("DELETE", cloud.auth_url + "/auth/tokens",
                             headers={"X-Auth-Token": tok, "X-Subject-Token": tok})
    assert status == 204
    assert (await raw("GET", nova, headers={"X-Auth-Token": tok}))[0] == 401


async def test_an_expired_token_is_refused_everywhere(make_cloud):
    async with make_cloud(token_ttl=1) as cloud:
        tok = await token(cloud, "admin")
        nova = cloud.settings.endpoint("nova") + "/v2.1/servers"
        assert (await raw("GET", nova, headers={"X-Auth-Token": tok}))[0] == 200
        await asyncio.sleep(1.2)
        assert await _refused_without(cloud, {"X-Auth-Token": tok}) == []
