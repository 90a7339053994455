"""The report and the CLI commands on runs made by the tests."""

from __future__ import annotations

import html
import json
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.report import FIGURES, build_report
from analysis.rundata import load_runs
from harness.cli import _register, app
from tests.analysis.conftest import BOOTS, SCHEDULERS

_register()
runner = CliRunner()


def test_report_holds_every_figure_and_table(analysis_runs, tmp_path):
    runs = load_runs(analysis_runs)
    rep = build_report(runs, tmp_path, jaeger_url="http://jaeger.example:16686")
    page = rep.html.read_text()
    for fid in FIGURES:
        assert f'data-figure="{fid}"' in page, fid
        assert f'id="fig-{fid}"' in page, f"{fid} has no plot"
    assert sorted(rep.figures) == sorted(FIGURES)
    # self-contained: plotly's code is inline, nothing is fetched
    assert "Plotly" in page and not re.search(r"<script[^>]+src=", page)
    # the run's full settings are embedded, so it can be reproduced
    for run in runs:
        assert html.escape(json.dumps(run.settings, indent=2)) in page
    assert "http://jaeger.example:16686/trace/" in page

    boots = pd.read_csv(rep.tables["boots"])
    assert len(boots) == BOOTS * len(SCHEDULERS) and (boots["outcome"] == "ACTIVE").all()
    compare = pd.read_csv(rep.tables["compare"])
    assert sorted(compare["scheduler"]) == sorted(SCHEDULERS)
    assert (compare["p50_ci_low"] <= compare["p50_ms"]).all() and (
        compare["p50_ms"] <= compare["p50_ci_high"]
    ).all()
    assert compare["ram_cv"].notna().all() and compare["largest_fit"].gt(0).all()
    sig = pd.read_csv(rep.tables["significance"])
    assert len(sig) == 1 and 0 <= sig["p_value"].iloc[0] <= 1
    phases = pd.read_csv(rep.tables["phases"])
    total = phases[phases["phase"] == "total"]
    assert (total["count"] == BOOTS).all() and (total["success_pct"] == 100).all()
    steps = pd.read_csv(rep.tables["steps"])
    assert set(range(3, 30)) <= set(steps["step"])


def test_report_command_writes_into_the_first_run_and_prints_the_headline(analysis_runs):
    result = runner.invoke(app, ["report", *map(str, analysis_runs)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert (analysis_runs[0] / "report.html").is_file() and (analysis_runs[0] / "boots.csv").is_file()
    for name in SCHEDULERS:
        assert name in result.output
    assert "p95 ms" in result.output


def test_report_command_rejects_a_directory_without_spans(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "no spans file" in result.output


def test_trace_show_prints_the_tree_and_writes_dot_and_html(analysis_runs, tmp_path):
    run = load_runs(analysis_runs[:1])[0]
    trace_id = run.analysis.table["trace_id"].iat[0]
    result = runner.invoke(
        app, ["trace", "show", trace_id[:12], "--run-dir", str(analysis_runs[0])], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert trace_id in result.output
    for text in ("POST /v2.1/servers", "step 3", "nova.virt.spawn", "step 29", "token_validation", "* "):
        assert text in result.output, text
    dot, page = tmp_path / "t.dot", tmp_path / "t.html"
    result = runner.invoke(
        app,
        [
            "trace",
            "show",
            trace_id,
            "--run-dir",
            str(analysis_runs[0]),
            "--dot",
            str(dot),
            "--html",
            str(page),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        dot.read_text().startswith("digraph trace {")
        and dot.read_text().count("->") == int((run.spans["trace_id"] == trace_id).sum()) - 1
    )
    assert "Plotly" in page.read_text()


@pytest.mark.parametrize("trace_id, message", [("ffffffff", "no trace"), ("ab", "too short")])
def test_trace_show_bad_ids(analysis_runs, trace_id, message):
    result = runner.invoke(app, ["trace", "show", trace_id, "--run-dir", str(analysis_runs[0])])
    assert result.exit_code == 2
    assert message in result.output
