"""Each algorithm's own invariant, run decision after decision on a simulated cloud."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.scheduling import HostTable, load_all, make_scheduler
from harness.scheduling.strategies import used_share
from tests.scheduling.helpers import host, hosts, place, spec

ALL = sorted(load_all())


def run(name: str, states, req, n: int, **options):
    """Place ``n`` copies of ``req`` one after another; returns the chosen hosts and final state."""
    sched = make_scheduler(name, seed=7, options=options)
    chosen = []
    for i in range(n):
        d = sched.select(states, spec(req.vcpus, req.memory_mb, req.disk_gb, instance_uuid=f"i{i}"))
        if d.chosen is None:
            chosen.append(None)
            continue
        chosen.append(d.chosen.host)
        states = place(states, d.chosen.host, req)
    return chosen, states


def test_every_name_the_issue_asks_for_is_registered():
    assert set(ALL) >= {"filter_scheduler", "random", "round_robin", "first_fit", "pack", "spread", "power_of_two"}


def test_pack_fills_one_host_before_the_next():
    req = spec(vcpus=1, memory_mb=4096, disk_gb=10)  # 4 fit per 16 GB host
    chosen, _ = run("pack", hosts(4), req, 10)
    assert chosen == ["h0"] * 4 + ["h1"] * 4 + ["h2"] * 2


def test_pack_prefers_the_tightest_fit_on_heterogeneous_hosts():
    states = [host("big", memory_mb=65536), host("small", memory_mb=8192, memory_mb_used=6144)]
    d = make_scheduler("pack", seed=1).select(states, spec(memory_mb=2048))
    assert d.chosen.host == "small" and d.weights["small"] == -2048


def test_spread_keeps_the_spread_of_used_ram_small():
    req = spec(vcpus=1, memory_mb=1024, disk_gb=1)
    states = hosts(6)
    sched = make_scheduler("spread", seed=3)
    for i in range(60):
        d = sched.select(states, req)
        states = place(states, d.chosen.host, req)
        used = [h.memory_mb_used for h in states]
        assert max(used) - min(used) <= req.memory_mb


def test_round_robin_cycles_and_skips_hosts_that_do_not_fit():
    states = hosts(4)
    states[2] = host("h2", memory_mb=512)  # never fits a 1 GB request
    chosen, _ = run("round_robin", states, spec(memory_mb=1024, disk_gb=1), 7)
    assert chosen == ["h0", "h1", "h3", "h0", "h1", "h3", "h0"]


def test_first_fit_takes_the_first_host_that_fits():
    states = [host("a", memory_mb=1024, memory_mb_used=1024), host("b"), host("c")]
    chosen, _ = run("first_fit", states, spec(memory_mb=2048, disk_gb=1), 3)
    assert chosen == ["b", "b", "b"]


def test_random_is_roughly_uniform_and_seeded():
    states = hosts(4)
    a = make_scheduler("random", seed=11)
    picks = Counter(a.select(states, spec()).chosen.host for _ in range(4000))
    assert set(picks) == {"h0", "h1", "h2", "h3"} and all(800 < n < 1200 for n in picks.values())
    b, c = make_scheduler("random", seed=5), make_scheduler("random", seed=5)
    assert [b.select(states, spec()).chosen.host for _ in range(20)] == \
           [c.select(states, spec()).chosen.host for _ in range(20)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 16384), st.integers(0, 32)), min_size=2, max_size=12),
       st.integers(0, 2**31))
def test_power_of_two_never_picks_the_more_loaded_of_its_two(used, seed):
    states = [host(f"h{i}", memory_mb=16384, vcpus=8, memory_mb_used=m, vcpus_used=c)
              for i, (m, c) in enumerate(used)]
    req = spec(vcpus=1, memory_mb=1, disk_gb=1)
    d = make_scheduler("power_of_two", seed=seed).select(states, req)
    if d.chosen is None:
        return
    assert len(d.candidates) >= 2 or len([h for h in states if h.fits(req)]) == 1
    if len(d.candidates) >= 2:
        load = used_share(HostTable.from_states(d.candidates[:2]), "ram")
        assert load[0] <= load[1]


def test_image_affinity_prefers_cached_hosts():
    states = [host("a"), host("b", cached_images=frozenset({"img"}), memory_mb_used=8000), host("c")]
    d = make_scheduler("image_affinity", seed=1).select(states, spec(image_id="img"))
    assert d.chosen.host == "b"
    d = make_scheduler("image_affinity", seed=1).select(states, spec(image_id="other"))
    assert d.chosen.host == "a"


host_strategy = st.builds(
    lambda i, mem, used, vc, vu, az, arch, dis: host(
        f"h{i}", memory_mb=mem, memory_mb_used=min(used, mem), vcpus=vc, vcpus_used=vu,
        availability_zone=az, arch=arch, disabled=dis),
    st.integers(0, 10**6), st.sampled_from([2048, 8192, 16384]), st.integers(0, 16384),
    st.integers(1, 16), st.integers(0, 64), st.sampled_from(["nova", "az2"]),
    st.sampled_from(["x86_64", "aarch64"]), st.booleans())


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states=st.lists(host_strategy, min_size=0, max_size=10, unique_by=lambda h: h.host),
       mem=st.sampled_from([512, 2048, 4096]), az=st.sampled_from([None, "nova", "az2"]),
       arch=st.sampled_from([None, "x86_64", "aarch64"]), seed=st.integers(0, 1000))
def test_every_candidate_is_feasible_and_none_only_when_nothing_fits(name, states, mem, az, arch, seed):
    req = spec(vcpus=1, memory_mb=mem, disk_gb=10, availability_zone=az, image_arch=arch, num_alternates=3)
    d = make_scheduler(name, seed=seed).select(states, req)

    def ok(h):
        return (h.fits(req) and not h.disabled and (az is None or h.availability_zone == az)
                and (arch is None or h.arch == arch))

    assert all(ok(h) for h in d.candidates)
    assert len({h.host for h in d.candidates}) == len(d.candidates)
    feasible = sum(ok(h) for h in states)
    assert len(d.candidates) == min(feasible, 1 + req.num_alternates)
    assert d.considered == len(states)
