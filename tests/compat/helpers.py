"""Helpers of the real-client tests: an openstacksdk connection to a test cloud, trace checks.

openstacksdk is synchronous and the embedded cloud runs in pytest's event loop, so every SDK call
runs in a worker thread (``asyncio.to_thread``) while the loop goes on serving the cloud.
"""

from __future__ import annotations

from typing import Any

import openstack
from openstack.connection import Connection

from harness.cloud import EmbeddedCloud
from harness.steps import ATTR_PHASE, CATALOGUE, Step
from tests.spanfile import SpanRec

CIRROS = "cirros-0.6.2-x86_64-disk"
WAIT_S = 120  # generous: a shared 2-core box
BOOT_STEPS = list(range(3, 30))  # a boot's trace; steps 1-2 are the client's auth, a trace of its own


def connect(auth_url: str, user: str = "demo", **extra: Any) -> Connection:
    """What a user types, and nothing from the environment or a clouds.yaml leaks in."""
    return openstack.connect(
        auth_url=auth_url, username=user, password=user, project_name=user,
        user_domain_id="default", project_domain_id="default",
        load_yaml_config=False, load_envvars=False, **extra,
    )


def connect_cloud(cloud: EmbeddedCloud, user: str = "demo") -> Connection:
    return connect(cloud.auth_url, user)


def assert_boot_trace(spans: list[SpanRec]) -> None:
    """Steps 3..29 each once in one trace, rooted at step 3, in the seed's order, right phases."""
    steps: dict[int, SpanRec] = {}
    for s in spans:
        if s.step is not None:
            assert s.step not in steps, f"step {s.step} appears twice"
            steps[s.step] = s
            assert s.attrs[ATTR_PHASE] == CATALOGUE[Step(s.step)].phase.value
    assert sorted(steps) == BOOT_STEPS, sorted(steps)
    assert len({s.trace_id for s in spans}) == 1
    roots = [s for s in spans if s.parent_id is None]
    assert len(roots) == 1 and roots[0].step == 3, [r.name for r in roots]
    starts = [steps[n].start for n in BOOT_STEPS]
    assert starts == sorted(starts)


def assert_auth_steps(spans: list[SpanRec]) -> None:
    """The client's password auth is steps 1 and 2, in one trace."""
    auth = [s for s in spans if s.step in (1, 2)]
    assert {s.step for s in auth} == {1, 2}
    for tid in {s.trace_id for s in auth}:
        assert {s.step for s in auth if s.trace_id == tid} == {1, 2}
