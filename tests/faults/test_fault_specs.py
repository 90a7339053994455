"""Fault specs refuse what makes no sense (naming it); the injector's windows, draws and errors."""

from __future__ import annotations

import asyncio
import time

import pytest

from harness.cloud import CloudStartError
from harness.faults import (
    FaultInjector, FaultSpec, InjectedFault, InjectedRpcFault, InjectedRpcTimeout, MessageLost,
    parse_specs, plan_from_profile,
)
from harness.messaging import rpc
from harness.services.http import ApiError
from harness.steps import Step


@pytest.mark.parametrize("item, words", [
    ({"service": "nova-apu", "error_rate": 0.1}, "unknown service 'nova-apu'"),
    ({"service": "glance-api", "step": 20, "error_rate": 0.1}, "step 20 runs in nova-compute, not glance-api"),
    ({"step": 30, "error_rate": 0.1}, "unknown step 30"),
    ({"step": 22, "error_rate": 1.5}, "error_rate: Input should be less than or equal to 1 (got 1.5)"),
    ({"step": 22, "lost_rate": 0.5}, "lost_rate applies to the send steps"),
    ({"step": 22, "revoke_rate": 0.5}, "revoke_rate applies to the token validation steps"),
    ({"step": 22}, "a fault needs an effect"),
    ({"service": "glance-api", "step": 22, "down": True}, "give no steps"),
    ({"step": 22, "error_rate": 0.1, "colour": "red"}, "colour: Extra inputs are not permitted"),
    ({"step": 22, "latency_ms": -3}, "latency_ms must be a non-negative number"),
    ({"step": 22, "latency_ms": {"dist": "gamma"}}, "unknown distribution 'gamma'"),
    ({"step": 22, "error_rate": 0.1, "status": 404}, "status: Input should be greater than or equal to 500"),
    ("glance", "a fault is a table/object"),
])
def test_bad_specs_are_refused_by_name(item, words):
    with pytest.raises(ValueError) as err:
        parse_specs([item])
    assert words in str(err.value)


def test_duplicate_ids_and_profile_table():
    with pytest.raises(ValueError, match="two faults are named 'x'"):
        parse_specs([{"id": "x", "step": 22, "error_rate": 0.1}, {"id": "x", "step": 21, "error_rate": 0.1}])
    with pytest.raises(ValueError, match="unknown keys"):
        plan_from_profile({"rulez": []})
    specs, seed = plan_from_profile({"seed": 3, "rules": [{"step": 29, "error_rate": 0.5}]})
    assert seed == 3 and specs[0].steps == [29] and specs[0].service == "*"


async def test_a_bad_faults_table_stops_the_cloud_with_its_reason(make_cloud, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("default = 0\n[[faults.rules]]\nstep = 22\nerror_rate = 2\n")
    cloud = make_cloud(profile=str(path))
    with pytest.raises(CloudStartError, match="error_rate"):
        async with cloud:
            pass


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_windows_follow_the_clock():
    clock = Clock()
    inj = FaultInjector([FaultSpec(service="glance-api", down=True, start_s=5, duration_s=2)], clock=clock)
    assert inj.down("glance-api") is None
    clock.t += 5
    assert inj.down("glance-api") is not None and inj.down("neutron-server") is None
    (snap,) = inj.snapshot()
    assert snap["active"] and snap["remaining_s"] == 2.0
    clock.t += 2
    assert inj.down("glance-api") is None and not inj.snapshot()[0]["active"]


async def test_each_transport_gets_its_natural_failure():
    inj = FaultInjector([FaultSpec(steps=[8, 22, 29], error_rate=1.0, status=503),
                         FaultSpec(steps=[12], lost_rate=1.0),
                         FaultSpec(steps=[14], timeout_rate=1.0, timeout_s=0.01)])
    with pytest.raises(InjectedRpcFault) as err:
        await inj.run_step(Step.SCHEDULE_CALL, 0)
    assert isinstance(err.value, rpc.RpcError)
    with pytest.raises(InjectedFault) as err:
        await inj.run_step(Step.GLANCE_RETURN_IMAGE, 0)
    assert isinstance(err.value, ApiError) and err.value.status == 503
    assert not isinstance(err.value, rpc.RpcError)
    with pytest.raises(MessageLost) as err:
        await inj.run_step(Step.SCHEDULER_CAST_BUILD, 0)
    assert isinstance(err.value, rpc.MessageLost)
    t0 = time.perf_counter()
    with pytest.raises(InjectedRpcTimeout) as err:
        await inj.run_step(Step.COMPUTE_CALL_CONDUCTOR, 0)
    assert isinstance(err.value, rpc.RpcTimeout) and time.perf_counter() - t0 >= 0.01
    assert await inj.run_step(Step.SCHEDULER_SELECT_HOST, 1.0) == 1.0  # a step with no fault


async def test_draws_are_seeded():
    async def outcomes(seed: int) -> list[bool]:
        inj = FaultInjector([FaultSpec(steps=[29], error_rate=0.3)], seed=seed)
        out = []
        for _ in range(200):
            try:
                await inj.run_step(Step.SPAWN, 0)
                out.append(False)
            except InjectedFault:
                out.append(True)
        return out

    a, b, c = await outcomes(1), await outcomes(1), await outcomes(2)
    assert a == b and a != c and 30 < sum(a) < 90


async def test_a_held_message_is_released_when_the_window_ends_or_the_fault_is_cleared():
    inj = FaultInjector([FaultSpec(id="w", service="nova-conductor", down=True, duration_s=0.2)])
    spec, held = await inj.wait_up("nova-conductor")
    assert spec.id == "w" and 0.15 <= held < 1.0
    inj.add(FaultSpec(id="forever", service="nova-conductor", down=True))
    waiter = asyncio.create_task(inj.wait_up("nova-conductor"))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    inj.remove("forever")
    spec, held = await asyncio.wait_for(waiter, 1)
    assert spec.id == "forever" and held < 0.5
