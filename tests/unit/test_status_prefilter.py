"""The DB prefilter of ``?status=`` never drops a server the exact status mapping would keep."""

from __future__ import annotations

import itertools

from harness.services.nova_views import _STATUS, _TASK_STATUS, STATUSES, api_status, vm_states_for


def test_prefilter_keeps_every_vm_state_that_can_show_the_status():
    tasks = [None, "scheduling", "spawning", *_TASK_STATUS]
    for status in STATUSES:
        kept = vm_states_for({status})
        for vm, task in itertools.product(_STATUS, tasks):
            if api_status(vm, task) == status:
                assert vm in kept, (status, vm, task)
    assert vm_states_for({"ACTIVE", "ERROR"}) == {"active", "error"}
    assert vm_states_for({"HARD_REBOOT"}) == {"active"}
