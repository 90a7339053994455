"""Wait for many servers with one list poll: ``GET /servers/detail?changes-since=T``.

A load generator that polls ``GET /servers/{id}`` per server makes the cloud serve
``boots in flight / interval`` requests a second just to be told "still BUILD" — at 64 boots in
flight and a 50 ms interval that is 1,280 requests a second, more than the boots themselves cost
the embedded cloud. Nova's ``changes-since`` filter answers every waiter with one request per
interval: the servers that reached ACTIVE or ERROR since the last poll. This is how
a client watching many servers (Heat, a dashboard) keeps the API's load flat; per-server polling
(what openstacksdk's ``wait_for_server`` and Rally do) stays available in
:meth:`OpenStackClient.wait_for_status`.

Clock skew: the cloud compares ``changes-since`` with its own ``updated_at``; each poll asks from
the previous poll's start minus ``margin`` seconds, so a client clock ahead of the cloud's by less
than the margin (0.25 s by default: the cloud is usually on the same clock) loses nothing; a
duplicate answer is harmless. A server deleted while building is not reported: its waiter times out.

Jitter: the gap between polls is drawn uniformly from 0.5-1.5 intervals (seeded), and the first
poll of a watch comes a random fraction of an interval after it starts. A fixed cadence started
by each boot's wait phase-locks the polls to the boots: at one boot in flight every poll landed on
the same steps (23-27 of the ``fast`` profile, ~50 ms in), and those steps ran 1-3 % long in the
fidelity benchmark because the poll's work shared the loop with them.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timezone
from typing import Any

from harness.client import CloudError, OpenStackClient

FINAL = frozenset({"ACTIVE", "ERROR"})
#: how long a server seen final with nobody waiting is remembered: a waiter registers a moment
#: after its create call returns, so a few seconds is plenty
REMEMBER_S = 10.0


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class StatusWatcher:
    """Resolves ``await watcher.wait(server_id)`` when the server is ACTIVE or ERROR.

    One background task polls while anyone waits and stops when nobody does.
    """

    def __init__(self, client: OpenStackClient, *, interval: float = 0.05, margin: float = 0.25,
                 page_limit: int = 1000, seed: int = 0) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0 s, got {interval}")
        self._rng = random.Random(seed)
        self.client, self.interval, self.margin, self.page_limit = client, interval, margin, page_limit
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._seen: dict[str, tuple[float, dict[str, Any]]] = {}  # final, nobody waiting yet
        self._since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.polls = 0  # list requests made (for the benchmarks' request counts)
        self.error: BaseException | None = None

    async def wait(self, server_id: str, *, timeout: float = 120.0) -> dict[str, Any]:
        """The server's document once it is final; TimeoutError after ``timeout`` seconds."""
        hit = self._seen.pop(server_id, None)
        if hit is not None:
            return hit[1]
        fut = self._waiters.get(server_id)
        if fut is None:
            fut = self._waiters[server_id] = asyncio.get_running_loop().create_future()
        if self._task is None or self._task.done():
            if self._since is None:
                self._since = time.time() - self.margin
            self._task = asyncio.create_task(self._run(), name="status-watcher")
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            if self._waiters.get(server_id) is fut:
                del self._waiters[server_id]
            raise TimeoutError(f"server {server_id} not ACTIVE or ERROR after {timeout}s") from None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    def gap(self, first: bool = False) -> float:
        """Seconds to the next poll: a random fraction of an interval for a watch's first poll,
        0.5-1.5 intervals after that (mean: one interval), so polls never lock to the boots."""
        return self.interval * (self._rng.random() if first else 0.5 + self._rng.random())

    async def _run(self) -> None:
        try:
            await asyncio.sleep(self.gap(first=True))
            while self._waiters:
                started = time.time()
                await self._poll(self._since if self._since is not None else started - self.margin)
                self._since = started - self.margin
                self._forget(started)
                await asyncio.sleep(self.gap())
        except Exception as exc:  # the cloud went away: every waiter hears it, none hangs
            self.error = exc
            for fut in self._waiters.values():
                if not fut.done():
                    fut.set_exception(exc)
            self._waiters.clear()

    async def _poll(self, since: float) -> None:
        # only servers that reached an end state: the rest would be rendered just to be skipped
        path = (f"/servers/detail?changes-since={_iso(since)}&status=ACTIVE&status=ERROR"
                f"&limit={self.page_limit}")
        while path:
            resp = await self.client.request("GET", "compute", path)
            self.polls += 1
            if resp.status_code != 200:
                raise CloudError(resp.status_code, resp.text)
            body = resp.json()
            for server in body["servers"]:
                self._offer(server)
            nxt = [link["href"] for link in body.get("servers_links", ()) if link.get("rel") == "next"]
            path = nxt[0].split("/v2.1", 1)[1] if nxt else ""

    def _offer(self, server: dict[str, Any]) -> None:
        if server.get("status") not in FINAL:
            return
        fut = self._waiters.pop(server["id"], None)
        if fut is not None and not fut.done():
            fut.set_result(server)
        elif fut is None:
            self._seen[server["id"]] = (time.time(), server)

    def _forget(self, now: float) -> None:
        if len(self._seen) > 256:
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < REMEMBER_S}
