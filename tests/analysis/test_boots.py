"""Phase times, exclusive times and critical paths on traces whose timings are known by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import boot_table, critical_path
from analysis.boots import PHASES, analyse_boots
from analysis.otlp import parse_otlp_bytes
from analysis.synthetic import as_jsonl
from tests.analysis.traces import (
    RPC_PHASES,
    RPC_STEPS,
    SEQUENTIAL_EXCLUSIVE,
    SEQUENTIAL_PATH,
    SEQUENTIAL_PHASES,
    no_valid_host_boot,
    rpc_boot,
    sequential_boot,
    user_trace_with_two_boots,
)

RESOURCE = {"harness.run.id": "run-1", "harness.scheduler": "filter_scheduler", "harness.profile": "test"}


def spans_of(*traces: dict) -> pd.DataFrame:
    """Write the traces as a spans file would hold them and load it back."""
    data = b"".join(as_jsonl(list(t.values()), RESOURCE) for t in traces)
    frame, stats = parse_otlp_bytes(data)
    assert stats.malformed_lines == stats.malformed_spans == 0
    return frame


def test_phase_times_follow_the_critical_path_and_add_up():
    boots = boot_table(spans_of(sequential_boot()))
    assert len(boots) == 1
    row = boots.iloc[0]
    assert row["outcome"] == "ACTIVE"
    assert row["total_ms"] == pytest.approx(60.0)
    for phase, ms in SEQUENTIAL_PHASES.items():
        assert row[f"{phase}_ms"] == pytest.approx(ms), phase
    assert sum(row[f"{p}_ms"] for p in PHASES if p != "auth") + row["other_ms"] == pytest.approx(60.0)
    assert row["queue_wait_ms"] == pytest.approx(2.5)
    assert row["work_ms"] == pytest.approx(57.5)
    assert (row["host"], row["instance_id"], row["scheduler"], row["run_id"]) == (
        "compute-7",
        "vm-1",
        "filter_scheduler",
        "run-1",
    )
    assert row["reschedules"] == 0 and row["claim_rounds"] == 1 and not row["no_valid_host"]
    assert row["n_spans"] == len(sequential_boot())


def test_critical_path_is_the_hand_computed_chain():
    trace = sequential_boot()
    name_of = {rec.span_id: name for name, rec in trace.items()}
    path = critical_path(spans_of(trace))
    t0 = trace["root"].start_ns
    got = [(name_of[r.span_id], (r.start_ns - t0) / 1e6, (r.end_ns - t0) / 1e6) for r in path.itertuples()]
    assert [g[0] for g in got] == [e[0] for e in SEQUENTIAL_PATH]
    assert np.allclose([g[1:] for g in got], [e[1:] for e in SEQUENTIAL_PATH])
    assert path["ms"].sum() == pytest.approx(60.0)
    # the background span and the work after ACTIVE are not on the path
    assert not {"q", "t", "u", "c"} & {name_of[s] for s in path["span_id"]}
    # time in the token fetch inside step 20 counts for step 20 and for token validation
    fetch = path[path["span_id"] == trace["m"].span_id].iloc[0]
    assert (fetch["step"], fetch["phase"]) == (20, "token_validation")


def test_exclusive_times_do_not_count_overlapping_children_twice():
    trace = sequential_boot()
    spans = spans_of(trace)
    analysis = analyse_boots(spans)
    exclusive = dict(zip(spans["span_id"], analysis.tree.exclusive_ms()))
    for name, ms in SEQUENTIAL_EXCLUSIVE.items():
        assert exclusive[trace[name].span_id] == pytest.approx(ms), name


def test_no_valid_host_boot_is_an_error_in_scheduling():
    boots = boot_table(spans_of(no_valid_host_boot()))
    row = boots.iloc[0]
    assert row["outcome"] == "ERROR"
    assert row["total_ms"] == pytest.approx(10.0)  # to the end of its last span
    assert (row["api_ms"], row["scheduling_ms"]) == (pytest.approx(3.0), pytest.approx(7.0))
    assert row["error"] == "No valid host was found"  # the error that ended first: step 10's
    assert row["failed_phase"] == "scheduling"
    assert row["no_valid_host"]


def test_two_boots_in_one_user_trace_and_auth_outside_the_window():
    trace = user_trace_with_two_boots()
    boots = boot_table(spans_of(trace)).set_index("root_span_id")
    a, b = boots.loc[trace["A"].span_id], boots.loc[trace["B"].span_id]
    assert (a["outcome"], a["total_ms"], a["api_ms"], a["spawn_ms"]) == ("ACTIVE", 9.0, 5.0, 4.0)
    assert (b["outcome"], b["total_ms"], b["api_ms"]) == ("INCOMPLETE", 10.0, 10.0)
    assert a["auth_ms"] == b["auth_ms"] == pytest.approx(5.0)


def test_boots_of_several_traces_are_independent_of_their_order():
    one = boot_table(spans_of(sequential_boot(seed=11)))
    many = boot_table(spans_of(no_valid_host_boot(), sequential_boot(seed=11), user_trace_with_two_boots()))
    assert len(many) == 4
    row = many[many["trace_id"] == one["trace_id"][0]].iloc[0]
    cols = ["total_ms"] + [f"{p}_ms" for p in PHASES]
    assert np.allclose(row[cols].to_numpy(float), one.iloc[0][cols].to_numpy(float))


def test_critical_step_times_add_up_per_boot():
    analysis = analyse_boots(spans_of(sequential_boot()))
    steps = analysis.critical_step_ms().iloc[0]
    assert steps.sum() == pytest.approx(60.0)
    # step 20's row holds l, m (its token fetch) and n: 3 + 4 + 2; 21 and 22 are their own steps
    assert (steps[20], steps[21], steps[22], steps[29]) == (9.0, 3.0, 5.0, 20.0)


def test_empty_and_bootless_tables():
    frame, _ = parse_otlp_bytes(b"")
    assert boot_table(frame).empty
    bootless = spans_of({k: v for k, v in user_trace_with_two_boots().items() if k in ("user", "auth")})
    assert boot_table(bootless).empty
    path = critical_path(bootless)  # no boot: root to the span that ends last
    assert path["ms"].sum() == pytest.approx(100.0)


def test_rpc_consumers_keep_their_work_and_casts_are_not_waited_for():
    analysis = analyse_boots(spans_of(rpc_boot()))
    row = analysis.table.iloc[0]
    assert row["total_ms"] == pytest.approx(45.0)
    for phase, ms in RPC_PHASES.items():
        assert row[f"{phase}_ms"] == pytest.approx(ms), phase
    steps = analysis.critical_step_ms().iloc[0]
    assert {s: steps[s] for s in RPC_STEPS} == pytest.approx(RPC_STEPS)
    assert steps.drop(list(RPC_STEPS)).sum() == pytest.approx(0.0)
