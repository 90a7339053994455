"""Planted bottlenecks: what each changes, that each shows in the trace, and that --fix removes it."""

from __future__ import annotations

import pytest

from harness.bottlenecks import Bottleneck, effective, evidence, parse, with_flags
from harness.config import Settings
from tests.faults.helpers import boot_many, image_id, users, wait_final


def test_planting_and_fixing_change_the_settings():
    s = Settings(bottlenecks=["all"])
    e = effective(s)
    assert (e.db_pool_size, e.conductor_workers, e.token_cache, e.compute_token_reuse) == (1, 1, False, False)
    fixed = with_flags(s, fix=["token-validation", "db-pool"])
    assert fixed.bottlenecks == ["conductor-workers"] and fixed.token_cache and fixed.compute_token_reuse
    assert effective(fixed).db_pool_size == Settings().db_pool_size
    assert with_flags(Settings(), plant=["db-pool"]).bottlenecks == ["db-pool"]
    assert parse(["all", "db-pool"]) == list(Bottleneck)
    with pytest.raises(ValueError, match="unknown bottleneck 'cpu'"):
        with_flags(Settings(), plant=["cpu"])


async def _boot(cloud, n: int) -> None:
    async with users(cloud) as (client, _):
        image = await image_id(client)
        ids = [a.server_id for a in await boot_many(client, image, n, n)]
        final = await wait_final(client, ids, timeout=30, interval=0.1)
        assert {s["status"] for s in final.values()} == {"ACTIVE"}


async def test_each_planted_bottleneck_shows_in_the_trace_and_the_fix_removes_it(make_cloud, tmp_path):
    planted = make_cloud(profile="bottlenecks", bottlenecks=["all"], run_dir=tmp_path / "planted")
    async with planted:
        assert planted.settings.conductor_workers == 1 and planted.settings.db_pool_size == 1
        await _boot(planted, 12)
    found = evidence(planted.run_dir / "spans.jsonl")
    assert found["db-pool"]["count"] >= 12 * 5 and found["db-pool"]["max_ms"] > 0
    assert found["conductor-workers"]["count"] >= 12 and found["conductor-workers"]["max_ms"] > 0
    assert found["token-validation"]["count"] >= 12 and found["token-validation"]["max_ms"] > 0

    fixed = make_cloud(profile="bottlenecks", run_dir=tmp_path / "fixed",
                       **with_flags(Settings(bottlenecks=["all"]), fix=["all"]).model_dump(
                           include={"bottlenecks", "token_cache", "compute_token_reuse"}))
    async with fixed:
        await _boot(fixed, 12)
    after = evidence(fixed.run_dir / "spans.jsonl")
    assert after["db-pool"]["count"] == 0 and after["token-validation"]["count"] == 0
