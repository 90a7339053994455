"""Each weigher and Nova's normalisation (``nova/weights.py``) against Nova's semantics and the
figures of Nova's own weigher tests."""

from __future__ import annotations

import numpy as np
import pytest

from harness.scheduling.hosts import HostTable
from harness.scheduling.weighers import WEIGHERS, load_weighers, normalize, weigh
from tests.scheduling.helpers import group, host, spec

load_weighers()


def weights(name: str, states, multiplier: float | None = None, req=None) -> list[float]:
    """Total weight of each host with only ``name`` enabled (Nova's weigher tests do the same)."""
    cls = WEIGHERS[name]
    table = HostTable.from_states(states)
    mult = cls.default_multiplier if multiplier is None else multiplier
    out = weigh(table, np.arange(len(table)), req or spec(), [(cls(), mult)])
    return [round(float(w), 6) for w in out]


def test_normalize_like_nova():
    assert list(normalize(np.array([]))) == []
    assert list(normalize(np.array([3.0, 3.0, 3.0]))) == [0, 0, 0]
    assert list(normalize(np.array([1.0, 2.0, 3.0]))) == [0, 0.5, 1]
    assert list(normalize(np.array([1.0, 2.0, 3.0]), minval=0)) == pytest.approx([1 / 3, 2 / 3, 1])
    assert list(normalize(np.array([1.0, 2.0]), minval=0, maxval=4)) == [0.25, 0.5]
    assert list(normalize(np.array([5.0, 5.0]), minval=0)) == [1, 1]  # minval 0: equal values are not 0


def test_defaults_are_novas():
    assert {n: c.default_multiplier for n, c in WEIGHERS.items()} == {
        "RAMWeigher": 1.0, "CPUWeigher": 1.0, "DiskWeigher": 1.0, "NumInstancesWeigher": 0.0,
        "BuildFailureWeigher": 1000000.0, "ServerGroupSoftAffinityWeigher": 1.0,
        "ServerGroupSoftAntiAffinityWeigher": 1.0, "ImageCacheWeigher": 0.0,
    }
    assert WEIGHERS["RAMWeigher"].option == "ram_weight_multiplier"


RAM_HOSTS = [host("h1", memory_mb=512), host("h2", memory_mb=1024), host("h3", memory_mb=3072),
             host("h4", memory_mb=8192)]


def test_ram_weigher_spreads_by_default_normalised_from_zero():
    # minval = 0: weight = free / max(free), as in Nova's test_ram_filter_multiplier1
    assert weights("RAMWeigher", RAM_HOSTS) == [0.0625, 0.125, 0.375, 1.0]


def test_ram_weigher_negative_multiplier_stacks_and_magnitude_scales():
    w = weights("RAMWeigher", RAM_HOSTS, -1.0)
    assert max(range(4), key=lambda i: w[i]) == 0  # the fullest host wins
    assert weights("RAMWeigher", RAM_HOSTS, 2.0) == [0.125, 0.25, 0.75, 2.0]
    assert weights("RAMWeigher", RAM_HOSTS, 0.0) == [0, 0, 0, 0]


def test_ram_weigher_ignores_the_allocation_ratio_and_clamps_overcommit_to_zero():
    states = [host("a", memory_mb=1024, ram_allocation_ratio=10.0),  # free 1024 (no ratio)
              host("b", memory_mb=2048, memory_mb_used=3072, ram_allocation_ratio=2.0),  # -1024 -> 0
              host("c", memory_mb=2048)]
    assert weights("RAMWeigher", states) == [0.5, 0.0, 1.0]


def test_cpu_weigher_applies_the_ratio():
    states = [host("a", vcpus=4, cpu_allocation_ratio=4.0, vcpus_used=8),   # 8 free
              host("b", vcpus=8, cpu_allocation_ratio=1.0),                  # 8 free
              host("c", vcpus=16, cpu_allocation_ratio=1.0, vcpus_used=20)]  # -4 -> 0
    assert weights("CPUWeigher", states) == [1.0, 1.0, 0.0]


def test_disk_weigher_in_mb_without_ratio():
    states = [host("a", local_gb=100, disk_allocation_ratio=3.0), host("b", local_gb=400, local_gb_used=200)]
    assert weights("DiskWeigher", states) == [0.5, 1.0]


def test_num_instances_weigher_off_by_default_negative_spreads():
    states = [host("a", running_vms=4), host("b", running_vms=0), host("c", running_vms=2)]
    assert weights("NumInstancesWeigher", states) == [0, 0, 0]
    assert weights("NumInstancesWeigher", states, -1.0) == [-1.0, 0.0, -0.5]


def test_build_failure_weigher_like_novas_test():
    states = [host(f"h{i}", failed_builds=n) for i, n in enumerate([0, 1, 10, 100])]
    assert weights("BuildFailureWeigher", states, 1000.0) == [0, -10, -100, -1000]
    assert weights("BuildFailureWeigher", states, 0.0) == [0, 0, 0, 0]


def test_soft_affinity_weighers():
    states = [host("h1"), host("h2"), host("h3")]
    soft = spec(group=group("soft-affinity", {"h1": 2, "h2": 1}))
    assert weights("ServerGroupSoftAffinityWeigher", states, req=soft) == [1.0, 0.5, 0.0]
    anti = spec(group=group("soft-anti-affinity", {"h1": 2, "h2": 1}))
    assert weights("ServerGroupSoftAntiAffinityWeigher", states, req=anti) == [0.0, 0.5, 1.0]
    assert weights("ServerGroupSoftAffinityWeigher", states, req=anti) == [0, 0, 0]


def test_image_cache_weigher():
    states = [host("a", cached_images=frozenset({"img"})), host("b"), host("c", cached_images=frozenset({"x"}))]
    assert weights("ImageCacheWeigher", states, 1.0, spec(image_id="img")) == [1.0, 0.0, 0.0]
    both = [host("a", cached_images=frozenset({"img"})), host("b", cached_images=frozenset({"img"}))]
    assert weights("ImageCacheWeigher", both, 1.0, spec(image_id="img")) == [1.0, 1.0]  # maxval 1
    assert weights("ImageCacheWeigher", states, 1.0, spec(image_id=None)) == [0, 0, 0]


def test_one_host_weighs_zero_and_weighers_add_up():
    assert weights("RAMWeigher", [host("a")]) == [0.0]
    table = HostTable.from_states(RAM_HOSTS)
    both = weigh(table, np.arange(4), spec(), [(WEIGHERS["RAMWeigher"](), 1.0), (WEIGHERS["RAMWeigher"](), 1.0)])
    assert [round(float(w), 6) for w in both] == [0.125, 0.25, 0.75, 2.0]
