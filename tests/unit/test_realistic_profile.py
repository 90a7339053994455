"""The realistic profile: well-formed, cited, and in step with what docs/latency-model.md says.

The documented end-to-end medians (in the profile's header and in the docs page) are recomputed
here from the step medians, so editing a step without updating the documentation fails.
"""

from __future__ import annotations

import re
import statistics
import tomllib
from pathlib import Path

import pytest

from harness.latency import LatencyModel, load_profile
from harness.steps import Step

ROOT = Path(__file__).resolve().parents[2]
PROFILE_PATH = ROOT / "harness" / "profiles" / "realistic.toml"
DOC_PATH = ROOT / "docs" / "latency-model.md"

BOOT_STEPS = [s for s in Step if s >= Step.BOOT_REQUEST]  # POST /servers .. ACTIVE
#: Rally nova.boot_server p90 for cirros on KVM (profile source [S8]): an unloaded boot's median
#: must not exceed what a loaded cloud shows at its 90th percentile.
PUBLISHED_BOOT_P90_MS = 9616.0


def _sum_medians(steps) -> float:
    prof = load_profile("realistic")
    return round(sum(prof.median_ms(s) for s in steps), 1)


def _documented(text: str, pattern: str, where: str) -> float:
    found = re.findall(pattern, text)
    assert len(found) == 1, f"{where}: expected one match of {pattern!r}, found {found}"
    return float(found[0])


@pytest.fixture(scope="module")
def raw_text() -> str:
    return PROFILE_PATH.read_text()


@pytest.fixture(scope="module")
def doc_text() -> str:
    return DOC_PATH.read_text()


def test_every_step_is_explicit_and_lognormal(raw_text):
    table = tomllib.loads(raw_text)["steps"]
    assert set(table) == {str(int(s)) for s in Step}, "every step 1..29 is listed, none by default"
    prof = load_profile("realistic")
    for step in Step:
        spec = prof.steps[step]
        assert spec["dist"] == "lognormal", f"step {int(step)}: {spec}"
        assert spec["median"] > 0, f"step {int(step)}"
        assert 0 < spec["sigma"] <= 1.5, f"step {int(step)}: sigma {spec['sigma']}"


def test_every_step_names_its_source_or_says_estimate(raw_text):
    lines = raw_text.splitlines()
    defined = set(re.findall(r"^# \[(S\d+)\]", raw_text, flags=re.M))
    referenced = set(re.findall(r"\[(S\d+)\]", raw_text))
    assert referenced <= defined, f"sources cited but not listed: {sorted(referenced - defined)}"
    in_steps = False
    for i, line in enumerate(lines):
        if line.startswith("["):
            in_steps = line.strip() == "[steps]"
            continue
        match = re.match(r"^(\d+) = ", line)
        if not (in_steps and match):
            continue
        comment = []
        j = i - 1
        while j >= 0 and lines[j].startswith("#"):
            comment.insert(0, lines[j])
            j -= 1
        block = "\n".join(comment)
        assert comment and comment[0].startswith(f"# step {match.group(1)} "), (
            f"step {match.group(1)} needs a comment block starting '# step {match.group(1)} '"
        )
        assert "source:" in block or "estimate" in block, f"step {match.group(1)}: no source"


def test_documented_medians_are_the_sum_of_the_step_medians(raw_text, doc_text):
    boot = _sum_medians(BOOT_STEPS)
    total = _sum_medians(list(Step))
    boot_re = r"steps 3-29 \(POST /servers to ACTIVE\)\D*?([\d.]+) ms"
    total_re = r"steps 1-29 \(with the user's token request\)\D*?([\d.]+) ms"
    for text, where in ((raw_text, "realistic.toml header"), (doc_text, "docs/latency-model.md")):
        assert _documented(text, boot_re, where) == boot, f"{where}: boot median is {boot} ms"
        assert _documented(text, total_re, where) == total, f"{where}: total median is {total} ms"
    row = _documented(doc_text, r"\| `realistic` \|.*\| ([\d.]+) ms \|", "profiles table")
    assert row == boot, f"docs profiles table: realistic boot median is {boot} ms"


def test_boot_median_is_a_few_seconds_and_spawn_dominates():
    boot = _sum_medians(BOOT_STEPS)
    assert 3000.0 <= boot <= PUBLISHED_BOOT_P90_MS
    prof = load_profile("realistic")
    assert max(BOOT_STEPS, key=prof.median_ms) == Step.SPAWN
    assert prof.median_ms(Step.SPAWN) > boot / 2


def test_sampled_boots_center_on_the_documented_median():
    """What the docs claim: an unloaded boot's median is close to (a little above) the sum."""
    model = LatencyModel(load_profile("realistic"), seed=11)
    totals = [sum(model.sample_ms(s) for s in BOOT_STEPS) for _ in range(3000)]
    boot = _sum_medians(BOOT_STEPS)
    assert boot * 0.99 <= statistics.median(totals) <= boot * 1.05


def test_costs_match_the_docs(doc_text):
    costs = load_profile("realistic").costs
    assert set(costs) == {"image_download_s_per_gb", "scheduler_ms_per_host"}
    for key, value in costs.items():
        assert value > 0, key
        documented = _documented(doc_text, rf"\| `{key}` \|.*\| ([\d.]+) \|\n", "costs table")
        assert documented == value, f"docs costs table: realistic {key} is {value}"


def test_the_docs_example_profile_loads(doc_text, tmp_path):
    blocks = re.findall(r"```toml\n(.*?)```", doc_text, flags=re.S)
    assert blocks, "docs/latency-model.md has a TOML example"
    path = tmp_path / "my-cloud.toml"
    path.write_text(blocks[0])
    prof = load_profile(str(path))
    assert prof.median_ms(Step.SPAWN) == 3000
    assert prof.median_ms(Step.SCHEDULER_SELECT_HOST) == 25
    assert prof.median_ms(Step.AUTH_REQUEST) == 5  # from `default`
    assert prof.costs["scheduler_ms_per_host"] == 0.5
