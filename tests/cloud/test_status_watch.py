"""``GET /servers/detail?changes-since=`` as Nova answers it, and the list-poll watcher built on it."""

from __future__ import annotations

import asyncio
import time

import pytest

from harness.client import OpenStackClient
from harness.status_watch import StatusWatcher, _iso
from tests.cloud.test_boot_flow import CIRROS


async def _image(client: OpenStackClient) -> str:
    return next(i["id"] for i in await client.images() if i["name"] == CIRROS)


async def test_changes_since_lists_changed_servers_including_deleted(cloud):
    async with OpenStackClient(cloud.auth_url) as client:
        image = await _image(client)
        old = await client.create_server("old", image=image)
        await client.wait_for_status(old["id"], timeout=30)
        await asyncio.sleep(0.05)
        mark = time.time()
        new = await client.create_server("new", image=image)
        await client.wait_for_status(new["id"], timeout=30)
        await client.delete_server(old["id"])
        await client.wait_for_delete(old["id"], timeout=30)

        resp = await client.request("GET", "compute", f"/servers/detail?changes-since={_iso(mark)}")
        assert resp.status_code == 200
        got = {s["id"]: s["status"] for s in resp.json()["servers"]}
        assert got == {new["id"]: "ACTIVE", old["id"]: "DELETED"}
        # without the filter deleted servers stay hidden
        plain = {s["id"] for s in (await client.request("GET", "compute", "/servers/detail")).json()["servers"]}
        assert old["id"] not in plain and new["id"] in plain
        # status narrows it further; a time after everything lists nothing
        resp = await client.request("GET", "compute",
                                    f"/servers/detail?changes-since={_iso(mark)}&status=ACTIVE")
        assert [s["id"] for s in resp.json()["servers"]] == [new["id"]]
        resp = await client.request("GET", "compute", f"/servers?changes-since={_iso(time.time() + 60)}")
        assert resp.json()["servers"] == []


@pytest.mark.parametrize("query, message", [
    ("changes-since=yesterday", "Invalid input for query parameters changes-since. Value: yesterday."),
    ("changes-since=2026-01-02T00:00:00Z&changes-before=2026-01-01T00:00:00Z",
     "The value of changes-since must be less than or equal to changes-before."),
])
async def test_bad_times_are_400(cloud, query, message):
    async with OpenStackClient(cloud.auth_url) as client:
        resp = await client.request("GET", "compute", f"/servers/detail?{query}",
                                    headers={"OpenStack-API-Version": "compute 2.66"})
        assert resp.status_code == 400
        body = resp.json()["badRequest"]
        assert body["code"] == 400 and body["message"].startswith(message)


async def test_watcher_resolves_every_boot_with_few_requests(cloud):
    async with OpenStackClient(cloud.auth_url) as client:
        image = await _image(client)
        watcher = StatusWatcher(client, interval=0.05)
        try:
            servers = await asyncio.gather(*(client.create_server(f"w{i}", image=image) for i in range(12)))
            finals = await asyncio.gather(*(watcher.wait(s["id"], timeout=30) for s in servers))
            assert [f["id"] for f in finals] == [s["id"] for s in servers]
            assert {f["status"] for f in finals} == {"ACTIVE"}
            # one list request per interval served all twelve (per-server polling makes >= 12)
            assert 1 <= watcher.polls < 12, watcher.polls
            # a server that finished before anyone waited on it is still found
            late = await client.create_server("late", image=image)
            await client.wait_for_status(late["id"], timeout=30)
            assert (await watcher.wait(late["id"], timeout=30))["status"] == "ACTIVE"
            with pytest.raises(TimeoutError):
                await watcher.wait("00000000-0000-0000-0000-000000000000", timeout=0.3)
        finally:
            await watcher.close()


def test_poll_gaps_are_jittered_around_the_interval_and_seeded():
    """Polls at a fixed cadence restarted by each wait lock onto the same boot steps; jittered
    gaps (0.5-1.5 intervals, mean one) spread them. The same seed gives the same gaps."""
    client = OpenStackClient("http://127.0.0.1:9/v3")
    watcher = StatusWatcher(client, interval=0.1, seed=7)
    gaps = [watcher.gap() for _ in range(2000)]
    assert all(0.05 <= g <= 0.15 for g in gaps)
    assert abs(sum(gaps) / len(gaps) - 0.1) < 0.003
    assert max(gaps) - min(gaps) > 0.09  # spread over the whole range, not a constant
    firsts = [watcher.gap(first=True) for _ in range(500)]
    assert all(0 <= g <= 0.1 for g in firsts) and min(firsts) < 0.01 and max(firsts) > 0.09
    again = StatusWatcher(client, interval=0.1, seed=7)
    assert [again.gap() for _ in range(2000)] == gaps


def test_watcher_refuses_a_bad_interval():
    with pytest.raises(ValueError, match="interval"):
        StatusWatcher(OpenStackClient("http://127.0.0.1:9/v3"), interval=0)


@pytest.mark.parametrize("watch", ["list", "server"])
async def test_run_load_with_either_watch_mode(cloud, watch):
    from harness.loadgen import BootOptions, fixed_count, run_load

    opts = BootOptions(watch=watch, delete=True, poll_interval=0.02)
    shape = lambda booter, tick: fixed_count(booter, count=10, concurrency=5, tick=tick)  # noqa: E731
    report = await run_load(cloud.settings, shape, opts=opts, cloud=cloud)
    assert [r.status for r in report.results] == ["ACTIVE"] * 10


def test_bad_watch_mode_is_refused():
    from harness.loadgen import Booter, BootOptions

    with pytest.raises(ValueError, match="'sometimes'"):
        Booter(OpenStackClient("http://127.0.0.1:9/v3"), None, "img", BootOptions(watch="sometimes"))  # type: ignore[arg-type]
