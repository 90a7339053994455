"""``harness bench`` refuses an OTEL_TRACES_SAMPLER that drops traces: a cell's per-boot results,
throughput and SLAs come from the boots' traces, so sampling would silently drop boots from them
(seen: a 0.25 ratio reported 112 boots and 14 boots/s where Locust ran 467)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from harness.cli import _register, app

_register()
runner = CliRunner()


@pytest.mark.parametrize("sampler", ["parentbased_traceidratio", "traceidratio", "always_off"])
def test_a_dropping_sampler_is_a_clear_error_before_any_cell_runs(sampler, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["bench", "--out", str(out)],
                           env={"COLUMNS": "200", "OTEL_TRACES_SAMPLER": sampler,
                                "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    assert result.exit_code == 2, result.output
    assert f"OTEL_TRACES_SAMPLER={sampler}" in result.output
    assert "drop boots from the results" in result.output
    assert not out.exists()  # nothing ran


@pytest.mark.parametrize("sampler", ["", "always_on", "parentbased_always_on", " ParentBased_Always_On "])
def test_samplers_that_keep_every_trace_are_allowed(sampler, monkeypatch):
    from harness.cli.cmd_bench import sampling_error

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    assert sampling_error() is None
