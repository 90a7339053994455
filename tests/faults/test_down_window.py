"""A window that takes glance-api down for 2 s in the middle of a run.

Boots asked for while Glance is down fail (nova-api answers 503 when it cannot check the image;
a build that cannot fetch it is rescheduled up to max_attempts, then ERROR with the reason), and
boots asked for after the window all succeed. The refused requests are Glance server spans with
ERROR status and a ``fault.service_down`` event.
"""

from __future__ import annotations

import asyncio
import time

from tests.faults.helpers import Attempt, authenticated, fault_list, image_id, post_boot, set_fault
from tests.spanfile import read_spans

RUN_S, OUTAGE_AT_S, OUTAGE_S, WORKERS = 6.0, 2.0, 2.0, 8


async def _until_final(client, att: Attempt) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        resp = await client.request("GET", "compute", f"/servers/{att.server_id}")
        assert resp.status_code == 200, resp.text  # nova-api itself never depends on Glance here
        server = resp.json()["server"]
        if server["status"] in ("ACTIVE", "ERROR"):
            att.final = server
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"server {att.server_id} neither ACTIVE nor ERROR after 60 s")


async def test_glance_down_for_two_seconds(make_cloud):
    async with make_cloud(profile="fast", seed=5) as cloud:
        client = await authenticated(cloud)
        admin = await authenticated(cloud, user="admin")
        try:
            image = await image_id(client)
            attempts: list[Attempt] = []
            t_start = time.monotonic()
            window: list[float] = []

            async def worker(w: int) -> None:
                i = 0
                while time.monotonic() - t_start < RUN_S:
                    att = await post_boot(client, image, w * 1000 + i)
                    attempts.append(att)
                    i += 1
                    if att.server_id:
                        await _until_final(client, att)
                    else:
                        await asyncio.sleep(0.02)

            async def outage() -> None:
                await asyncio.sleep(OUTAGE_AT_S)
                before = time.monotonic()
                await set_fault(admin, {"id": "glance-outage", "service": "glance-api", "down": True,
                                        "duration_s": OUTAGE_S})
                after = time.monotonic()
                window.extend([before, after])  # down for sure in [after, before + 2], up after after + 2

            await asyncio.gather(outage(), *(worker(w) for w in range(WORKERS)))
            (fault,) = await fault_list(admin)
        finally:
            await client.close()
            await admin.close()
        spans_path = cloud.run_dir / "spans.jsonl"
    before, after_set = window
    inside = [a for a in attempts if after_set + 0.1 <= a.sent < before + OUTAGE_S - 0.1]
    after = [a for a in attempts if a.sent >= after_set + OUTAGE_S + 0.1]
    assert len(inside) >= 5 and len(after) >= 5, (len(inside), len(after))

    def failed(a: Attempt) -> bool:
        return a.status != 202 or (a.final or {}).get("status") == "ERROR"

    # boots in the window fail, each because of Glance
    failures = [a for a in inside if failed(a)]
    assert failures, "no boot failed while glance-api was down"
    for a in attempts:
        if a.status != 202:
            assert a.status == 503 and a.body["serviceUnavailable"]["code"] == 503, a.body
            assert "GET /v2/images/{image_id}" in a.body["serviceUnavailable"]["message"]
        elif a.final["status"] == "ERROR":
            assert "glance-api answered 503" in a.final["fault"]["message"], a.final["fault"]
    # every accepted boot ended ACTIVE or ERROR; every boot after the window succeeded
    assert all(a.final and a.final["status"] in ("ACTIVE", "ERROR") for a in attempts if a.server_id)
    assert all(a.status == 202 and a.final["status"] == "ACTIVE" for a in after), \
        [(a.status, a.final) for a in after if failed(a)][:3]
    # the outage is in the trace: Glance's refused requests
    assert fault["injected"].get("refused", 0) >= len(failures)
    refused = [s for s in read_spans(spans_path)
               if s.service == "glance-api" and any(e["name"] == "fault.service_down" for e in s.events)]
    assert len(refused) == fault["injected"]["refused"]
    assert all(s.attrs["http.response.status_code"] == 503 and s.status["code"] == "STATUS_CODE_ERROR"
               for s in refused)
