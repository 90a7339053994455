"""Nova's filter scheduler end to end over host states: filters, weighers, subset, alternates."""

from __future__ import annotations

from collections import Counter

import pytest

from harness.scheduling import make_scheduler
from harness.scheduling.options import OptionError
from tests.scheduling.helpers import group, host, hosts, place, spec

RAM_ONLY = {"cpu_weight_multiplier": 0, "disk_weight_multiplier": 0}


def test_defaults_spread_over_free_ram_and_record_counts():
    states = [host("a", memory_mb_used=8000), host("b"), host("c", memory_mb_used=2000)]
    d = make_scheduler("filter_scheduler", seed=1).select(states, spec())
    assert [h.host for h in d.candidates] == ["b", "c", "a"]
    assert d.filter_counts == [("placement", 3), ("ComputeFilter", 3), ("ImagePropertiesFilter", 3),
                               ("ServerGroupAntiAffinityFilter", 3), ("ServerGroupAffinityFilter", 3)]
    assert d.weights["b"] > d.weights["c"] > d.weights["a"]


def test_negative_ram_multiplier_packs():
    req = spec(memory_mb=4096, disk_gb=1)
    sched = make_scheduler("filter_scheduler", seed=1, options={"ram_weight_multiplier": "-1", **RAM_ONLY})
    states, chosen = hosts(3), []
    for _ in range(6):
        d = sched.select(states, req)
        chosen.append(d.chosen.host)
        states = place(states, d.chosen.host, req)
    assert chosen == ["h0", "h0", "h0", "h0", "h1", "h1"]


def test_build_failures_send_a_host_to_the_back():
    states = [host("a", failed_builds=1), host("b", memory_mb_used=15000), host("c", memory_mb_used=15000)]
    d = make_scheduler("filter_scheduler", seed=1).select(states, spec(memory_mb=256))
    assert d.candidates[-1].host == "a"


def test_alternates_follow_the_weighed_order():
    states = [host(f"h{i}", memory_mb_used=1000 * i) for i in range(6)]
    d = make_scheduler("filter_scheduler", seed=1).select(states, spec(num_alternates=3))
    assert [h.host for h in d.candidates] == ["h0", "h1", "h2", "h3"]


def test_host_subset_size_picks_among_the_best_n_only():
    states = [host(f"h{i}", memory_mb_used=1000 * i) for i in range(6)]
    sched = make_scheduler("filter_scheduler", seed=3, options={"host_subset_size": 3})
    picks = Counter()
    for _ in range(300):
        d = sched.select(states, spec(num_alternates=5))
        picks[d.chosen.host] += 1
        rest = [h.host for h in d.candidates[1:]]
        assert rest == [h for h in ["h0", "h1", "h2", "h3", "h4", "h5"] if h != d.chosen.host]
    assert set(picks) == {"h0", "h1", "h2"}


def test_shuffle_best_same_weighed_hosts():
    states = hosts(4)
    plain = make_scheduler("filter_scheduler", seed=1)
    assert {plain.select(states, spec()).chosen.host for _ in range(30)} == {"h0"}
    shuffled = make_scheduler("filter_scheduler", seed=1, options={"shuffle_best_same_weighed_hosts": "true"})
    assert len({shuffled.select(states, spec()).chosen.host for _ in range(60)}) == 4


def test_enabled_filters_and_legacy_capacity_filters():
    states = [host("a", availability_zone="az2"), host("b")]
    d = make_scheduler("filter_scheduler", seed=1, options={
        "enabled_filters": "AvailabilityZoneFilter,RamFilter,ComputeFilter"}).select(
        states, spec(availability_zone="az2"))
    assert [h.host for h in d.candidates] == ["a"]
    assert d.filter_counts == [("placement", 1), ("AvailabilityZoneFilter", 1), ("RamFilter", 1),
                               ("ComputeFilter", 1)]


def test_no_valid_host_reports_where_hosts_went():
    states = [host("a", arch="aarch64"), host("b", memory_mb=512)]
    d = make_scheduler("filter_scheduler", seed=1).select(states, spec(memory_mb=1024, image_arch="x86_64"))
    assert d.chosen is None
    assert d.filter_counts == [("placement", 1), ("ComputeFilter", 1), ("ImagePropertiesFilter", 0)]


def test_anti_affinity_and_soft_anti_affinity():
    states = hosts(3)
    hard = spec(group=group("anti-affinity", {"h0": 1, "h1": 1}))
    d = make_scheduler("filter_scheduler", seed=1).select(states, hard)
    assert [h.host for h in d.candidates] == ["h2"]
    soft = spec(group=group("soft-anti-affinity", {"h0": 2, "h1": 1}))
    d = make_scheduler("filter_scheduler", seed=1).select(states, soft)
    assert [h.host for h in d.candidates] == ["h2", "h1", "h0"]


def test_max_placement_results_limits_the_hosts_considered():
    d = make_scheduler("filter_scheduler", seed=1, options={"max_placement_results": 2}).select(hosts(5), spec())
    assert d.filter_counts[0] == ("placement", 2)


def test_image_cache_weigher_can_be_turned_on():
    states = [host("a"), host("b", cached_images=frozenset({"img"}), memory_mb_used=4000)]
    assert make_scheduler("filter_scheduler", seed=1).select(states, spec(image_id="img")).chosen.host == "a"
    warm = make_scheduler("filter_scheduler", seed=1, options={"image_cache_weight_multiplier": 5})
    assert warm.select(states, spec(image_id="img")).chosen.host == "b"
    assert warm.uses_image_cache and not make_scheduler("filter_scheduler", seed=1).uses_image_cache


@pytest.mark.parametrize("options, text", [
    ({"enabled_filters": "ComputeFilter,NoSuchFilter"}, "NoSuchFilter"),
    ({"weighers": "RAMWeigher,Heavy"}, "Heavy"),
    ({"ram_weight_multiplier": "lots"}, "ram_weight_multiplier='lots'"),
    ({"host_subset_size": "0"}, "must be >= 1"),
    ({"shuffle_best_same_weighed_hosts": "maybe"}, "true or false"),
])
def test_bad_options_name_the_option_and_value(options, text):
    with pytest.raises(OptionError, match=text):
        make_scheduler("filter_scheduler", seed=1, options=options)


def test_unknown_scheduler_and_unknown_option():
    with pytest.raises(ValueError, match="unknown scheduler 'best'.*filter_scheduler"):
        make_scheduler("best", seed=1)
    with pytest.raises(ValueError, match="has no option.*colour"):
        make_scheduler("pack", seed=1, options={"colour": "red"})
    with pytest.raises(OptionError, match="resource='gpu'"):
        make_scheduler("spread", seed=1, options={"resource": "gpu"})
