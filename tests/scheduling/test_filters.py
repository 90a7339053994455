"""Each filter against Nova's documented semantics (``nova/scheduler/filters``) and placement's
capacity arithmetic."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from harness.scheduling.filters import FILTERS, load_filters, make_filters, run_filters
from harness.scheduling import HostState
from harness.scheduling.hosts import HostTable
from harness.scheduling.placement import allocation_candidates
from tests.scheduling.helpers import group, host, hosts, spec

load_filters()


def passes(name: str, h, req) -> bool:
    return FILTERS[name]().host_passes(h, req)


def test_every_filter_has_a_file_and_nova_name():
    assert set(FILTERS) >= {"ComputeFilter", "AvailabilityZoneFilter", "RamFilter", "CoreFilter", "DiskFilter",
                            "ImagePropertiesFilter", "ServerGroupAffinityFilter",
                            "ServerGroupAntiAffinityFilter"}


def test_compute_filter_drops_disabled_hosts():
    assert passes("ComputeFilter", host("a"), spec())
    assert not passes("ComputeFilter", host("a", disabled=True), spec())


def test_availability_zone_filter():
    assert passes("AvailabilityZoneFilter", host("a", availability_zone="az2"), spec())  # none asked
    assert passes("AvailabilityZoneFilter", host("a", availability_zone="az2"), spec(availability_zone="az2"))
    assert not passes("AvailabilityZoneFilter", host("a"), spec(availability_zone="az2"))


def test_ram_filter_applies_the_allocation_ratio_to_the_total():
    h = host("a", memory_mb=1024, ram_allocation_ratio=1.5, memory_mb_used=1024)  # 1536 - 1024 free
    assert passes("RamFilter", h, spec(memory_mb=512))
    assert not passes("RamFilter", h, spec(memory_mb=513))


def test_ram_filter_max_unit_is_the_physical_total():
    h = host("a", memory_mb=1024, ram_allocation_ratio=2.0)  # 2048 free, but max_unit 1024
    assert passes("RamFilter", h, spec(memory_mb=1024))
    assert not passes("RamFilter", h, spec(memory_mb=1536))


def test_core_filter_with_ratio_and_max_unit():
    h = host("a", vcpus=4, cpu_allocation_ratio=4.0, vcpus_used=15)  # 16 - 15 = 1 free
    assert passes("CoreFilter", h, spec(vcpus=1))
    assert not passes("CoreFilter", h, spec(vcpus=2))
    assert not passes("CoreFilter", host("b", vcpus=4, cpu_allocation_ratio=16.0), spec(vcpus=5))


def test_disk_filter_and_a_request_without_disk():
    full = host("a", local_gb=100, local_gb_used=100)
    assert not passes("DiskFilter", full, spec(disk_gb=1))
    assert passes("DiskFilter", full, spec(disk_gb=0))  # boot from volume asks no DISK_GB
    assert passes("DiskFilter", host("b", local_gb=100, disk_allocation_ratio=2.0, local_gb_used=150),
                  spec(disk_gb=50))


@pytest.mark.parametrize("image_arch, host_arch, ok", [
    (None, "aarch64", True),
    ("x86_64", "x86_64", True),
    ("aarch64", "x86_64", False),
    ("amd64", "x86_64", True),
    ("X86_64", "x86_64", True),
    ("i386", "i686", True),
    ("x86_32", "i686", True),
    ("i686", "x86_64", False),
])
def test_image_properties_filter_on_architecture(image_arch, host_arch, ok):
    assert passes("ImagePropertiesFilter", host("a", arch=host_arch), spec(image_arch=image_arch)) is ok


def test_affinity_filter():
    g = group("affinity", {"h1": 2})
    assert passes("ServerGroupAffinityFilter", host("h1"), spec(group=g))
    assert not passes("ServerGroupAffinityFilter", host("h2"), spec(group=g))
    assert passes("ServerGroupAffinityFilter", host("h2"), spec(group=group("affinity")))  # first member
    assert passes("ServerGroupAffinityFilter", host("h2"), spec(group=group("anti-affinity", {"h1": 1})))
    assert passes("ServerGroupAffinityFilter", host("h2"), spec())


def test_anti_affinity_filter_and_max_server_per_host():
    g = group("anti-affinity", {"h1": 1})
    assert not passes("ServerGroupAntiAffinityFilter", host("h1"), spec(group=g))
    assert passes("ServerGroupAntiAffinityFilter", host("h2"), spec(group=g))
    assert passes("ServerGroupAntiAffinityFilter", host("h1"), spec(group=group("anti-affinity", {"h1": 1}, 2)))
    assert not passes("ServerGroupAntiAffinityFilter", host("h1"), spec(group=group("anti-affinity", {"h1": 2}, 2)))
    assert passes("ServerGroupAntiAffinityFilter", host("h1"), spec(group=group("affinity", {"h1": 1})))


def test_run_filters_counts_hosts_left_after_each_and_stops_at_zero():
    table = HostTable.from_states([host("a", disabled=True), host("b", arch="aarch64"), host("c")])
    keep = np.ones(3, dtype=bool)
    names = ["ComputeFilter", "ImagePropertiesFilter", "AvailabilityZoneFilter", "RamFilter"]
    keep, counts = run_filters(table, spec(image_arch="x86_64", availability_zone="elsewhere"), keep,
                               make_filters(names))
    assert counts == [("ComputeFilter", 2), ("ImagePropertiesFilter", 1), ("AvailabilityZoneFilter", 0)]
    assert not keep.any()


def test_placement_stage_combines_capacity_zone_enabled_and_ignore_hosts():
    states = hosts(5)
    states[0] = host("h0", disabled=True)
    states[1] = host("h1", memory_mb_used=16000)
    states[2] = host("h2", availability_zone="az2")
    table = HostTable.from_states(states)
    keep = allocation_candidates(table, spec(memory_mb=1024, ignore_hosts=frozenset({"h4"})))
    assert [table.names[i] for i in np.flatnonzero(keep)] == ["h2", "h3"]
    keep = allocation_candidates(table, spec(memory_mb=256, availability_zone="nova"))
    assert [table.names[i] for i in np.flatnonzero(keep)] == ["h1", "h3", "h4"]
    assert int(allocation_candidates(table, spec(), limit=2).sum()) == 2


async def test_host_table_from_db_columns_matches_rows(tmp_path):
    from harness.db import NovaDB, providers

    db = NovaDB(f"sqlite+aiosqlite:///{tmp_path}/nova.db")
    await db.create_schema()
    assert len(HostTable.from_columns(await providers.node_columns(db))) == 0  # no hosts yet
    states = [host("a", vcpus_used=3, availability_zone="az2"), host("b", arch="aarch64", disabled=True)]
    await db.seed([{k: getattr(h, k) for k in HostState.__dataclass_fields__ if k != "cached_images"}
                   for h in states])
    table = HostTable.from_columns(await providers.node_columns(db), images={"img": ["b"]})
    await db.close()
    assert list(table) == [states[0], replace(states[1], cached_images=frozenset({"img"}))]
