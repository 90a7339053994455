"""500 boots with a 5% error rate at every REST step and in the virt driver: nothing is lost.

Every boot nova-api accepts ends ACTIVE or ERROR with a fault, every refused one gets an OpenStack
error body, no host keeps resources of a dead server, every injected fault is an event in the
trace, and the span counters balance.
"""

from __future__ import annotations

import time

import pytest

from harness.faults import REST_STEPS
from harness.steps import Step
from tests.faults.helpers import (
    all_servers, assert_no_leaks, authenticated, boot_many, delete_all, fault_list, image_id, wait_final,
)
from tests.spanfile import read_spans

BOOTS, CONCURRENCY = 500, 50
STEPS = sorted({int(s) for s in REST_STEPS} | {int(Step.SPAWN)})


def _profile(tmp_path) -> str:
    """The zero profile plus a [faults] table: the profile path of setting faults."""
    path = tmp_path / "faulty.toml"
    path.write_text(
        "default = 0\n[costs]\nimage_download_s_per_gb = 0.0\n"
        "[faults]\nseed = 8\n"
        "[[faults.rules]]\nid = \"rest-5pct\"\nsteps = " + str(STEPS) + "\nerror_rate = 0.05\n"
    )
    return str(path)


@pytest.mark.slow
async def test_500_boots_with_5pct_errors_end_active_or_error_and_leak_nothing(make_cloud, tmp_path):
    t0 = time.monotonic()
    cloud = make_cloud(profile=_profile(tmp_path), seed=8)
    async with cloud:
        client = await authenticated(cloud)
        admin = await authenticated(cloud, user="admin")
        try:
            image = await image_id(client)
            attempts = await boot_many(client, image, BOOTS, CONCURRENCY)
            accepted = [a.server_id for a in attempts if a.server_id]
            refused = [a for a in attempts if a.status != 202]
            # a refused boot is a 5xx with the OpenStack error body, never a traceback or a 4xx
            for a in refused:
                assert a.status in (500, 503), (a.status, a.body)
                (kind, err), = a.body.items()
                assert err["code"] == a.status, a.body
                assert "Injected fault" in err["message"] or "Identity service" in err["message"], a.body
            final = await wait_final(client, accepted, timeout=60)
            errors = [s for s in final.values() if s["status"] == "ERROR"]
            for s in errors:
                assert s["fault"]["message"], s
            assert 0 < len(errors) < len(accepted) and refused, (len(errors), len(accepted), len(refused))
            # resources: ERROR servers hold nothing, ACTIVE ones exactly their host's VM
            await assert_no_leaks(cloud)
            # every injected error is visible: the fault's counters
            (fault,) = [f for f in await fault_list(admin) if f["id"] == "rest-5pct"]
            injected = fault["injected"].get("error", 0)
            assert injected >= len(refused) + len(errors)
            # delete everything (ERROR servers too): every host, hypervisor and port is empty
            await delete_all(client, accepted)
            assert not await all_servers(client)
            r = await assert_no_leaks(cloud)
            assert not any(r["allocations"].values()) and not any(r["vms"].values()) and not r["ports"]
        finally:
            await client.close()
            await admin.close()
        spans_path = cloud.run_dir / "spans.jsonl"
    counts = cloud.span_counts
    for svc, c in counts.items():
        assert c["started"] == c["ended"] == c["exported"] and c["dropped"] == 0, (svc, c)
    spans = read_spans(spans_path)
    events = [e for s in spans for e in s.events if e["name"] == "fault.error"]
    assert len(events) == injected
    failed = [s for s in spans if any(e["name"] == "fault.error" for e in s.events)]
    assert all(s.status.get("code") == "STATUS_CODE_ERROR" for s in failed)
    print(f"\n{BOOTS} boots: {len(accepted)} accepted ({len(errors)} ERROR), {len(refused)} refused, "
          f"{injected} faults injected, {time.monotonic() - t0:.1f} s")
