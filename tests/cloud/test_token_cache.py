"""keystonemiddleware-like token cache: status polls do not reach Keystone, the boot's validation
steps always do (two boots on one token are both complete), and ``token_cache=false`` sends
every request's token to Keystone."""

from __future__ import annotations

import pytest

from harness.client import OpenStackClient
from tests.cloud.test_boot_flow import CIRROS, assert_complete_boot
from tests.spanfile import boot_traces, read_spans

POLLS = 12


def _keystone_validations(spans) -> int:
    return sum(1 for s in spans if s.service == "keystone" and s.kind == "SPAN_KIND_SERVER"
               and s.name == "GET /v3/auth/tokens")


@pytest.mark.parametrize("cache", [True, False])
async def test_polls_hit_the_cache_and_boot_steps_reach_keystone(make_cloud, cache):
    async with make_cloud(token_cache=cache, seed=11) as cloud:
        async with OpenStackClient(cloud.auth_url) as client:
            await client.authenticate()
            image = next(i["id"] for i in await client.images() if i["name"] == CIRROS)
            ids = []
            for name in ("a", "b"):  # the same user token for both boots
                server = await client.create_server(name, flavor="1", image=image)
                final = await client.wait_for_status(server["id"], timeout=30, interval=0.01)
                assert final["status"] == "ACTIVE", final
                ids.append(server["id"])
            cloud.telemetry.force_flush()
            before = _keystone_validations(read_spans(cloud.run_dir / "spans.jsonl"))
            for _ in range(POLLS):
                assert (await client.get_server(ids[0]))["status"] == "ACTIVE"
        path = cloud.run_dir / "spans.jsonl"
        await cloud.stop()
    spans = read_spans(path)
    boots = boot_traces(spans)
    for sid in ids:  # steps 4-5, 21, 24 and 27 validated at Keystone in each boot
        assert_complete_boot(boots[sid])
        steps = {s.span_id: s.step for s in boots[sid] if s.step in (4, 21, 24, 27)}
        reached = {steps[s.parent_id] for s in boots[sid]
                   if s.service == "keystone" and s.kind == "SPAN_KIND_SERVER" and s.parent_id in steps}
        assert reached == {4, 21, 24, 27}
    added = _keystone_validations(spans) - before
    assert added == (0 if cache else POLLS)
