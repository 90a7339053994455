"""Each kind of fault, end to end: what the caller sees, what the trace shows, what is left behind.

Lost casts and stuck builds are caught by the build-timeout periodic task; an RPC timeout, a
revoked token and an error at a service's door each end in their natural failure; a consumer that
is down holds its messages; added latency lands in the step's span.
"""

from __future__ import annotations

import asyncio

from harness.services.nova_periodic import BUILD_TIMEOUT_FAULT
from tests.faults.helpers import (
    assert_no_leaks, boot_many, delete_all, eventually, fault_list, image_id, set_fault, users, wait_final,
)
from tests.spanfile import read_spans

QUICK_TIMEOUT = dict(instance_build_timeout=1.5, periodic_interval=0.3)


def _events(spans, name):
    return [(s, e) for s in spans for e in s.events if e["name"] == name]


async def test_lost_cast_ends_in_build_timeout_and_frees_the_claim(make_cloud):
    async with make_cloud(**QUICK_TIMEOUT) as cloud:
        async with users(cloud) as (client, admin):
            image = await image_id(client)
            await set_fault(admin, {"id": "lose-build", "steps": [12], "lost_rate": 1.0})
            ids = [a.server_id for a in await boot_many(client, image, 3, 3)]
            assert all(ids)  # nova-api got its host: the cast is lost after it answered
            final = await wait_final(client, ids, timeout=15, interval=0.2)
            assert {s["status"] for s in final.values()} == {"ERROR"}
            assert {s["fault"]["message"] for s in final.values()} == {BUILD_TIMEOUT_FAULT}
            await assert_no_leaks(cloud)
            resp = await admin.request("DELETE", "compute", "/os-harness-faults/lose-build")
            assert resp.status_code == 204
            (ok,) = [a.server_id for a in await boot_many(client, image, 1, 1)]
            assert (await wait_final(client, [ok], timeout=15))[ok]["status"] == "ACTIVE"
            await delete_all(client, ids + [ok])
        path = cloud.run_dir / "spans.jsonl"
    spans = read_spans(path)
    lost = _events(spans, "fault.lost")
    assert len(lost) == 3 and all(s.step == 12 and s.status["code"] == "STATUS_CODE_ERROR" for s, _ in lost)
    timed_out = _events(spans, "instance.build_timed_out")
    assert {e["attributes"][0]["value"]["stringValue"] for _, e in timed_out} == set(ids)


async def test_scheduler_call_timeout_sets_error_at_once(make_cloud):
    async with make_cloud() as cloud:
        async with users(cloud) as (client, admin):
            image = await image_id(client)
            await set_fault(admin, {"steps": [8], "timeout_rate": 1.0, "timeout_s": 0.3})
            (att,) = await boot_many(client, image, 1, 1)
            assert att.status == 202
            server = (await wait_final(client, [att.server_id], timeout=10))[att.server_id]
            assert server["status"] == "ERROR" and "Timed out" in server["fault"]["message"]
            await assert_no_leaks(cloud)


async def test_token_revoked_while_glance_validates_it_fails_the_build_with_401(make_cloud):
    async with make_cloud(compute_token_reuse=True) as cloud:
        async with users(cloud) as (client, admin):
            image = await image_id(client)
            await set_fault(admin, {"id": "revoke", "steps": [21], "revoke_rate": 1.0})
            ids = [a.server_id for a in await boot_many(client, image, 2, 2)]
            final = await wait_final(client, ids, timeout=15)
            for s in final.values():
                assert s["status"] == "ERROR" and "glance-api answered 401" in s["fault"]["message"], s
            (fault,) = await fault_list(admin)
            assert fault["injected"]["revoked"] == 2 * cloud.settings.max_attempts  # every attempt
            # the next boot after the fault is cleared gets a fresh token (the revoked one is dropped)
            await admin.request("DELETE", "compute", "/os-harness-faults")
            (ok,) = [a.server_id for a in await boot_many(client, image, 1, 1)]
            assert (await wait_final(client, [ok], timeout=15))[ok]["status"] == "ACTIVE"
            await assert_no_leaks(cloud)
        path = cloud.run_dir / "spans.jsonl"
    revoked = _events(read_spans(path), "fault.token_revoked")
    assert revoked and all(s.service == "keystone" for s, _ in revoked)


async def test_conductor_down_holds_messages_then_boots_finish(make_cloud):
    async with make_cloud() as cloud:
        async with users(cloud) as (client, admin):
            image = await image_id(client)
            await set_fault(admin, {"service": "nova-conductor", "down": True, "duration_s": 2.5})
            ids = [a.server_id for a in await boot_many(client, image, 3, 3)]
            final = await wait_final(client, ids, timeout=20, interval=0.1)
            assert {s["status"] for s in final.values()} == {"ACTIVE"}
        path = cloud.run_dir / "spans.jsonl"
    held = [s for s, _ in _events(read_spans(path), "fault.service_down") if s.step == 15]
    assert len(held) == 3
    assert all(s.attrs["messaging.harness.queue_wait_ms"] >= 500 for s in held)


async def test_error_at_nova_api_door_is_a_503_body_and_the_admin_api_still_answers(make_cloud):
    async with make_cloud() as cloud:
        async with users(cloud) as (client, admin):
            await set_fault(admin, {"id": "api-503", "service": "nova-api", "error_rate": 1.0, "status": 503})
            resp = await client.request("GET", "compute", "/servers")
            assert resp.status_code == 503
            assert resp.json()["serviceUnavailable"]["message"].startswith("Injected fault api-503")
            resp = await admin.request("DELETE", "compute", "/os-harness-faults/api-503")
            assert resp.status_code == 204
            assert (await client.request("GET", "compute", "/servers")).status_code == 200


async def test_added_latency_is_in_the_step_span(make_cloud):
    async with make_cloud(profile="zero") as cloud:
        async with users(cloud) as (client, admin):
            image = await image_id(client)
            await set_fault(admin, {"steps": [22], "latency_ms": 150})
            ids = [a.server_id for a in await boot_many(client, image, 1, 1)]
            assert (await wait_final(client, ids, timeout=10))[ids[0]]["status"] == "ACTIVE"
        path = cloud.run_dir / "spans.jsonl"
    (step22,) = [s for s in read_spans(path) if s.step == 22]
    assert (step22.end - step22.start) / 1e6 >= 150
    assert step22.attrs["harness.fault.latency_ms"] == 150.0
    assert step22.attrs["openstack.boot.modeled_delay_ms"] == 150.0
    assert [e["name"] for e in step22.events] == ["fault.latency"]


async def test_stuck_delete_is_finished_locally(make_cloud):
    """nova-compute down: the terminate casts wait in its queues, the periodic task deletes the
    servers locally and frees their claims; when compute is back its VMs go too."""
    async with make_cloud(**QUICK_TIMEOUT) as cloud:
        async with users(cloud) as (client, admin):
            image = await image_id(client)
            ids = [a.server_id for a in await boot_many(client, image, 2, 2)]
            await wait_final(client, ids, timeout=10)
            await set_fault(admin, {"service": "nova-compute", "down": True})  # until cleared
            for sid in ids:
                assert (await client.request("DELETE", "compute", f"/servers/{sid}")).status_code == 204

            async def deleted() -> None:
                live = {i["uuid"] for i in await cloud.db.list_instances(project_id=None)}
                assert not set(ids) & live
                assert not any((await cloud.db.allocations_by_host()).values())

            await eventually(deleted, timeout=10)
            await admin.request("DELETE", "compute", "/os-harness-faults")  # compute comes back

            async def clean() -> None:
                r = await assert_no_leaks(cloud)
                assert not any(r["vms"].values()) and not r["ports"]

            await eventually(clean, timeout=10)
