"""The load test's parts that need no cloud: options, shapes, arrivals, catalog, run settings.

Never import Locust (or a module that does) in pytest's process: importing it monkey-patches the
whole process for gevent, under every other test. What needs Locust runs in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys

import configargparse
import numpy as np
import pytest
from scipy import stats

from loadtests.arrivals import PoissonArrivals
from loadtests.keystone_session import CloudError, Token, auth_url_of, catalog_endpoint
from loadtests.load_options import LoadOptions, add_arguments
from loadtests.load_run import CloudInfo, LoadRun
from loadtests.load_plan import spawn_rate_for, target_users
from tests.loadtests.conftest import locust_cmd, locust_env


class WebUiFlagsParser(configargparse.ArgumentParser):
    """Locust's parser (a configargparse one) without Locust: it drops the web UI flags only."""

    def add_argument(self, *args, include_in_web_ui=True, is_secret=False, **kwargs):
        return super().add_argument(*args, **kwargs)


def parsed(*args: str):
    parser = WebUiFlagsParser()
    add_arguments(parser)
    return parser.parse_args(list(args), env_vars={})  # not this shell's OS_* or LOCUST_* variables


def test_locust_is_not_imported_into_pytests_process():
    assert "locust" not in sys.modules, "a test imported Locust, which monkey-patches every other test"


def options(*args: str) -> LoadOptions:
    return LoadOptions.from_parsed(parsed(*args))


# -- options ----------------------------------------------------------------------------------------

def test_defaults_point_at_the_embedded_cloud_and_its_run_directory():
    o = options()
    assert (o.load_shape, o.image, o.flavor, o.username, o.project_name) == ("closed", "cirros", "1", "demo", "demo")
    assert str(o.spans_file) == "runs/latest/spans.jsonl" and not o.token_per_boot
    assert options("--locust-spans", "off").spans_file is None
    assert "password" not in o.public()


@pytest.mark.parametrize("field,value,flag", [
    ("poll_interval", "-1", "--poll-interval"), ("poll_interval", "nan", "--poll-interval"),
    ("arrival_rate", "0", "--arrival-rate"), ("step_users", "1.5", "--step-users"),
    ("load_shape", "sawtooth", "--load-shape"), ("image", " ", "--image"),
])
def test_a_bad_value_from_the_web_ui_names_its_option(field, value, flag):
    ns = parsed()
    setattr(ns, field, value)  # the web UI's form sets values without argparse's checks
    with pytest.raises(ValueError, match=flag):
        LoadOptions.from_parsed(ns)


def test_a_bad_value_on_the_command_line_is_a_usage_error_not_a_traceback(tmp_path):
    for args, expected in ((["--poll-interval", "-1"], "--poll-interval"),
                           (["--load-shape", "sawtooth"], "--load-shape"),
                           (["--host", "keystone:5000"], "--host")):
        res = subprocess.run(locust_cmd("--headless", "-t", "1s", *args), cwd=tmp_path, env=locust_env(),
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 2, (args, res.stderr[-2000:])
        assert expected in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]


# -- shapes -----------------------------------------------------------------------------------------

def test_step_shape_adds_users_every_step_up_to_the_maximum():
    o = options("--load-shape", "step", "--step-users", "2", "--step-time", "5")
    assert [target_users(o, 7, t) for t in (0, 4.9, 5, 10, 15, 100)] == [2, 2, 4, 6, 7, 7]


def test_spike_shape_adds_its_users_for_its_duration_at_once():
    o = options("--load-shape", "spike", "--spike-users", "20", "--spike-at", "10", "--spike-duration", "5")
    assert [target_users(o, 3, t) for t in (0, 9.9, 10, 14.9, 15)] == [3, 3, 23, 23, 3]
    assert spawn_rate_for(o, 1.0) == 20.0


@pytest.mark.parametrize("shape", ["closed", "open"])
def test_closed_and_open_shapes_keep_the_user_count(shape):
    o = options("--load-shape", shape)
    assert {target_users(o, 5, t) for t in (0, 1, 100)} == {5}
    assert spawn_rate_for(o, 2.5) == 2.5


# -- arrivals ---------------------------------------------------------------------------------------

def test_arrivals_are_reproducible_per_seed_and_distinct_per_user():
    def first(seed, user):
        a = PoissonArrivals(seed=seed, worker_index=0, user_number=user, start=100.0)
        return [a.next(2.0) for _ in range(5)]

    assert first(42, 1) == first(42, 1)
    assert first(42, 1) != first(42, 2) and first(42, 1) != first(43, 1)
    assert np.all(np.diff([100.0, *first(42, 1)]) > 0)


def test_the_superposed_streams_are_a_poisson_process_at_the_total_rate():
    """8 users at rate/8 each, ~20,000 arrivals: mean rate within 2%, exponential gaps (KS)."""
    rate, users, horizon = 50.0, 8, 400.0
    times = []
    for user in range(users):
        a = PoissonArrivals(seed=42, worker_index=0, user_number=user, start=0.0)
        t = a.next(rate / users)
        while t < horizon:
            times.append(t)
            t = a.next(rate / users)
    gaps = np.diff(np.sort(times))
    assert abs(len(times) / horizon - rate) / rate < 0.02
    assert stats.kstest(gaps, "expon", args=(0, 1 / rate)).pvalue > 0.01


def test_arrivals_follow_the_schedule_not_the_time_boots_take():
    """Gaps add to the previous *intended* time: a slow boot does not push the next arrival."""
    a = PoissonArrivals(seed=1, worker_index=0, user_number=1, start=0.0)
    b = PoissonArrivals(seed=1, worker_index=0, user_number=1, start=0.0)
    first = a.next(1.0)
    assert b.next(1.0) == first and a.next(1.0) == b.next(1.0)  # no notion of "now" in the schedule
    with pytest.raises(ValueError):
        a.next(0.0)


# -- keystone -------------------------------------------------------------------------------------

CATALOG = [{"type": "compute", "endpoints": [
    {"interface": "public", "region": "RegionOne", "url": "http://nova:8774/v2.1/"},
    {"interface": "internal", "region": "RegionOne", "url": "http://nova-int:8774/v2.1"}]}]


def test_endpoints_come_from_the_catalog_by_type_interface_and_region():
    assert catalog_endpoint(CATALOG, "compute") == "http://nova:8774/v2.1"
    assert catalog_endpoint(CATALOG, "compute", interface="internal") == "http://nova-int:8774/v2.1"
    with pytest.raises(CloudError, match="no public 'image' endpoint"):
        catalog_endpoint(CATALOG, "image")
    with pytest.raises(CloudError, match="in region RegionTwo"):
        catalog_endpoint(CATALOG, "compute", region="RegionTwo")


def test_host_is_keystones_v3_url():
    assert auth_url_of("http://127.0.0.1:5000") == "http://127.0.0.1:5000/v3"
    assert auth_url_of("https://cloud.example/identity/v3/") == "https://cloud.example/identity/v3"
    with pytest.raises(ValueError, match="--host"):
        auth_url_of("127.0.0.1:5000")


def test_a_token_is_renewed_before_it_expires():
    hour = Token(id="t", issued_at=0.0, expires_at=3600.0, catalog=[])
    assert hour.fresh(3539.0) and not hour.fresh(3541.0)  # a minute before expiry
    short = Token(id="t", issued_at=0.0, expires_at=100.0, catalog=[])
    assert short.fresh(89.0) and not short.fresh(91.0)  # a tenth of a short lifetime


# -- run settings -----------------------------------------------------------------------------------

def write_cloud_settings(run_dir, keystone_port: int) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "settings.json").write_text(json.dumps({"run_id": "abc123", "settings": {
        "ports": {"keystone": keystone_port}, "scheduler": "filter_scheduler", "profile": "fast",
        "hosts": None, "host_groups": [{"count": 3}, {"count": 2}]}}))


def test_the_clouds_settings_are_read_only_for_the_cloud_at_host(tmp_path):
    write_cloud_settings(tmp_path, 5000)
    info = CloudInfo.read(tmp_path, "http://127.0.0.1:5000/v3")
    assert info == CloudInfo(run_id="abc123", scheduler="filter_scheduler", profile="fast", hosts=5)
    assert CloudInfo.read(tmp_path, "http://127.0.0.1:6000/v3") is None  # another cloud
    assert CloudInfo.read(tmp_path / "none", "http://127.0.0.1:5000/v3") is None


def test_spans_carry_the_run_settings(tmp_path):
    write_cloud_settings(tmp_path, 5000)
    run = LoadRun(run_id="r1", options=options("--load-shape", "open", "--arrival-rate", "3"),
                  host="http://127.0.0.1:5000/v3", cloud=CloudInfo.read(tmp_path, "http://127.0.0.1:5000/v3"))
    attrs = run.span_attributes(users_total=4)
    assert attrs["harness.load.run.id"] == "r1" and attrs["harness.load.shape"] == "open"
    assert attrs["harness.load.arrival_rate"] == 3.0 and attrs["harness.load.users"] == 4
    assert (attrs["harness.run.id"], attrs["harness.scheduler"], attrs["harness.hosts"]) == ("abc123", "filter_scheduler", 5)
