"""``harness schedulers`` and ``--scheduler``/``--scheduler-opt`` on the commands that start a cloud."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from harness.cli import _register, app
from harness.cli.common import build_settings

_register()
runner = CliRunner()


def test_schedulers_lists_every_algorithm_with_options():
    result = runner.invoke(app, ["schedulers"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("filter_scheduler", "random", "round_robin", "first_fit", "pack", "spread", "power_of_two"):
        assert name in result.output
    assert "resource=ram" in result.output


def test_schedulers_details_of_the_filter_scheduler():
    result = runner.invoke(app, ["schedulers", "filter_scheduler"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("ram_weight_multiplier", "host_subset_size", "[scheduler] max_placement_results",
                 "ServerGroupAntiAffinityFilter", "BuildFailureWeigher", "1000000.0"):
        assert text in result.output


def test_unknown_scheduler_is_a_clear_error():
    result = runner.invoke(app, ["schedulers", "fastest"])
    assert result.exit_code == 2 and "unknown scheduler 'fastest'" in result.output


@pytest.mark.parametrize("args, text", [
    (["--scheduler", "nope"], "unknown scheduler 'nope'"),
    (["--scheduler-opt", "ram_weight_multiplier"], "use key=value"),
    (["--scheduler-opt", "ram_weight_multiplier=heavy"], "ram_weight_multiplier='heavy'"),
    (["-s", "pack", "-O", "resource=gpu"], "resource='gpu'"),
    (["-s", "pack", "-O", "host_subset_size=2"], "has no option(s) host_subset_size"),
])
def test_boot_refuses_bad_scheduler_settings_before_starting_a_cloud(args, text):
    result = runner.invoke(app, ["boot", "-N", "1", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert text in " ".join(result.output.split())


def test_scheduler_opts_override_single_keys_of_the_settings(tmp_path, monkeypatch):
    config = tmp_path / "harness.toml"
    monkeypatch.setenv("HARNESS_CONFIG", str(config))  # load_settings sets it; restored after the test
    config.write_text('scheduler = "filter_scheduler"\n[scheduler_options]\nram_weight_multiplier = -1.0\n'
                      'host_subset_size = 2\n')
    s = build_settings(config=config, scheduler_opt=["host_subset_size=3", "cpu_weight_multiplier=0"])
    assert s.scheduler_options == {"ram_weight_multiplier": -1.0, "host_subset_size": "3",
                                   "cpu_weight_multiplier": "0"}
