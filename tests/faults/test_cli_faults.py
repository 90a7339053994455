"""``harness faults``: bad values named before any call; set, list and clear on a running cloud."""

from __future__ import annotations

import asyncio
import json

from typer.testing import CliRunner

from harness.cli import _register, app
from harness.faults import plan_from_profile

_register()
runner = CliRunner()


def test_bad_values_are_named_without_a_cloud():
    for args, words in (
        (["set", "--service", "glance-api", "--step", "20", "--error-rate", "0.1"],
         "step 20 runs in nova-compute, not glance-api"),
        (["set", "--step", "22", "--error-rate", "2"], "error_rate"),
        (["set", "--step", "22", "--latency-ms", "{oops"], "--latency-ms '{oops'"),
        (["set", "--step", "22"], "a fault needs an effect"),
        (["preset", "nope"], "unknown preset 'nope'"),
    ):
        result = runner.invoke(app, ["faults", *args])
        assert result.exit_code == 2, (args, result.output)
        assert words in " ".join(result.output.split()), (args, result.output)


def test_profile_presets_and_rules():
    specs, _ = plan_from_profile({"presets": ["slow-glance"], "rules": [{"step": 29, "error_rate": 0.1}]})
    assert [s.id for s in specs][0] == "slow-glance" and specs[1].steps == [29]


async def test_set_list_clear_on_a_running_cloud(cloud):
    auth = ["--auth-url", cloud.auth_url]

    async def cli(*args: str):
        return await asyncio.to_thread(runner.invoke, app, ["faults", *args, *auth])

    r = await cli("preset", "token-revoked-mid-boot")
    assert r.exit_code == 0, r.output
    r = await cli("set", "--service", "glance-api", "--down", "--for", "30", "--id", "outage")
    assert r.exit_code == 0, r.output
    r = await cli("list", "--json")
    assert r.exit_code == 0, r.output
    faults = {f["id"]: f for f in json.loads(r.output)["faults"]}
    assert set(faults) == {"token-revoked-mid-boot", "outage"}
    assert faults["outage"]["down"] and faults["outage"]["active"]
    assert faults["token-revoked-mid-boot"]["revoke_rate"] == 0.2
    r = await cli("list")
    assert r.exit_code == 0 and "outage" in r.output and "token-revoked-mid-boot" in r.output
    r = await cli("clear", "outage")
    assert r.exit_code == 0 and "cleared outage" in r.output
    r = await cli("list", "--os-username", "demo", "--os-password", "demo", "--os-project-name", "demo")
    assert r.exit_code == 2 and "403" in r.output
    r = await cli("clear")
    r = await cli("list")
    assert "no faults" in r.output
