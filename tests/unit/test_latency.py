import asyncio
import random
import statistics
import time

import pytest

from harness.latency import LatencyModel, ProfileError, available_profiles, load_profile, make_sampler, median_of
from harness.steps import Step


@pytest.mark.parametrize("spec", [
    {"dist": "fixed", "value": 5},
    {"dist": "uniform", "low": 2, "high": 8},
    {"dist": "normal", "mean": 10, "stddev": 1},
    {"dist": "lognormal", "median": 7, "sigma": 0.4},
    {"dist": "exponential", "mean": 6},
])
def test_sample_median_matches_the_model(spec):
    rng = random.Random(7)
    sampler = make_sampler(spec)
    values = [sampler(rng) for _ in range(20000)]
    assert min(values) >= 0
    assert statistics.median(values) == pytest.approx(median_of(spec), rel=0.05)


@pytest.mark.parametrize("spec, words", [
    ({"dist": "gamma", "k": 1}, "unknown distribution"),
    ({"dist": "uniform", "low": 5}, "needs 'high'"),
    ({"dist": "uniform", "low": 5, "high": 1}, "low <= high"),
    ({"dist": "fixed", "value": -1}, "non-negative"),
    ("fast", "a table or a number"),
])
def test_bad_distributions_name_the_problem(spec, words):
    with pytest.raises(ProfileError, match=words):
        make_sampler(spec)


def test_shipped_profiles_load():
    names = available_profiles()
    assert {"zero", "fast", "realistic"} <= set(names)
    for name in names:
        prof = load_profile(name)
        assert set(prof.steps) == set(Step)
    assert all(load_profile("zero").median_ms(s) == 0 for s in Step)


def test_unknown_profile_and_bad_step(tmp_path):
    with pytest.raises(ProfileError, match="unknown latency profile 'nope'"):
        load_profile("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("[steps]\n30 = 1\n")
    with pytest.raises(ProfileError, match="unknown steps"):
        load_profile(str(bad))


def test_same_seed_same_delays():
    prof = load_profile("fast")
    a = LatencyModel(prof, seed=3)
    b = LatencyModel(prof, seed=3)
    assert [a.sample_ms(Step.SPAWN) for _ in range(50)] == [b.sample_ms(Step.SPAWN) for _ in range(50)]


def test_delay_sleeps_the_modeled_time(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text("default = 0\n[steps]\n29 = 50\n")
    model = LatencyModel(load_profile(str(p)), seed=1)
    t0 = time.perf_counter()
    ms = asyncio.run(model.delay(Step.SPAWN))
    assert ms == 50 and time.perf_counter() - t0 >= 0.049
