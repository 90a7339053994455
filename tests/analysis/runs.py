"""Making runs for the analysis tests: boot servers in an embedded cloud, then stop it (flush)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from harness.client import OpenStackClient
from harness.cloud import EmbeddedCloud

CIRROS = "cirros-0.6.2-x86_64-disk"


async def boot_servers(
    cloud: EmbeddedCloud,
    n: int,
    *,
    concurrency: int = 2,
    flavor: str = "1",
    timeout: float = 120.0,
    stagger: float = 0.0,
) -> list[str]:
    """Boot ``n`` servers, at most ``concurrency`` at a time, each by a user who authenticates
    first (steps 1-2); boot ``i`` starts no earlier than ``i * stagger`` seconds (so concurrent
    boots are not in lockstep, and one stall does not hit the same step of all of them).
    Returns the final statuses."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> str:
        await asyncio.sleep(i * stagger)
        async with sem, OpenStackClient(cloud.auth_url) as client:
            await client.authenticate()
            image = next(im["id"] for im in await client.images() if im["name"] == CIRROS)
            server = await client.create_server(f"vm-{i}", flavor=flavor, image=image)
            return (await client.wait_for_status(server["id"], timeout=timeout))["status"]

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def make_run(cloud: EmbeddedCloud, n: int, **kw) -> Path:
    """Boot ``n`` servers and stop the cloud; returns the run directory (spans flushed)."""
    async with cloud:
        statuses = await boot_servers(cloud, n, **kw)
    assert statuses == ["ACTIVE"] * n, statuses
    return cloud.run_dir
