"""A round trip through the embedded cloud: with a profile whose every step has a known, fixed
delay, the analysis finds each step's median within 5% of the model.

The measure is each step's own time on the boot's critical path (its own spans' sections, see
``BootAnalysis.critical_step_ms(own=True)``): the modelled delay is awaited inside the step's span,
and the harness's own work there (a DB write, a password check) is a few percent of these delays.
Steps 1-2 (the user's authentication) are their own trace, outside any boot; their spans'
exclusive time is the measure there.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis import load_spans
from analysis.boots import analyse_boots
from harness.latency import load_profile
from harness.steps import Step
from tests.analysis.runs import make_run

PROFILE = Path(__file__).with_name("fixed_steps.toml")
TOLERANCE = 0.05


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_step_medians_match_the_fixed_delay_model(make_cloud):
    model = load_profile(str(PROFILE))
    # enough workers that no message waits in a queue (queue wait would be inside steps 9, 15)
    cloud = make_cloud(profile=str(PROFILE), scheduler_workers=4, conductor_workers=4)
    run = await make_run(cloud, 6, concurrency=3, stagger=1.1)

    spans = load_spans(run)
    assert spans.attrs["malformed_lines"] == 0
    analysis = analyse_boots(spans)
    boots = analysis.table
    assert len(boots) == 6 and (boots["outcome"] == "ACTIVE").all()

    measured = analysis.critical_step_ms(own=True).median()
    auth = pd.Series(analysis.tree.exclusive_ms()).groupby(analysis.tree.step).median()
    off = {}
    for step in Step:
        got = auth[int(step)] if step <= Step.AUTH_ISSUE_TOKEN else measured[int(step)]
        want = model.median_ms(step)
        if got != pytest.approx(want, rel=TOLERANCE):
            off[int(step)] = f"measured {got:.2f} ms, model {want:.2f} ms"
    assert not off, off
    # and the boot is the sum of its steps: nothing on the path belongs to no step
    assert measured["none"] / boots["total_ms"].median() < TOLERANCE
