"""The scheduler's DB parts on PostgreSQL: concurrent claims, server groups, the image cache."""

from __future__ import annotations

import random

from harness.db import NovaDB, groups, image_cache
from tests.scheduling.test_concurrent_claims import FLAVORS, scenario


async def test_concurrent_claims_never_overcommit_on_postgresql(db_url, tmp_path):
    rng = random.Random(11)
    plan = [("boot", rng.randrange(len(FLAVORS))) if rng.random() < 0.8 else ("delete", rng.randrange(100))
            for _ in range(80)]
    await scenario(tmp_path, "filter_scheduler", 6, 1.0, plan, db_url=db_url)


async def test_server_groups_and_image_cache_queries_on_postgresql(db_url):
    db = NovaDB(db_url)
    try:
        await db.create_schema()
        g = await groups.create_group(db, name="g", project_id="p", user_id="u", policy="anti-affinity",
                                      rules={"max_server_per_host": 2})
        for i, host in enumerate(["h1", "h1", "h2", None]):
            await db.create_instance({"uuid": f"i{i}", "name": f"s{i}", "project_id": "p", "user_id": "u",
                                      "flavor_id": "1", "image_ref": "", "vcpus": 1, "memory_mb": 512,
                                      "root_gb": 1, "vm_state": "active", "task_state": None, "host": host,
                                      "request": {}})
            await groups.add_member(db, g["uuid"], f"i{i}")
        assert await groups.member_hosts(db, g["uuid"]) == {"h1": 2, "h2": 1}
        assert await groups.member_hosts(db, g["uuid"], exclude="i0") == {"h1": 1, "h2": 1}
        assert await groups.members(db, g["uuid"]) == ["i0", "i1", "i2", "i3"]
        assert (await groups.get_group(db, g["uuid"]))["rules"] == {"max_server_per_host": 2}
        assert await image_cache.add(db, "h1", "img") is True
        assert await image_cache.add(db, "h1", "img") is False
        assert await image_cache.hosts_with(db, "img") == ["h1"]
        assert await groups.delete_group(db, g["uuid"]) and await groups.get_group(db, g["uuid"]) is None
    finally:
        await db.close()
