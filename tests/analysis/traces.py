"""Hand-built traces with known timings (milliseconds from the trace start) for the analysis tests.

Each builder returns the spans by a short name, so a test can state what it expects of each one.
The timings below are what the expected values in the tests were computed from by hand.
"""

from __future__ import annotations

import random

from analysis.synthetic import SpanRec, TraceBuilder
from harness.steps import Step


def sequential_boot(seed: int = 1, *, t0_ms: float = 0.0) -> dict[str, SpanRec]:
    """A boot with asynchronous RPC consumers, overlapping children and work after ACTIVE.

    ::

        root  3  [0, 30]   nova-api SERVER
          a   4  [1, 6]      b keystone SERVER [2, 5]: c 5 [3, 4], c2 (none) [3.5, 4.5] overlapping c
          d   6  [6, 8]    e 7 [8, 9]
          f   8  [9, 29]   call scheduler
            g 9  [10, 12]  receive (queue wait 0.5)
              h 10 [12, 16]  (h1 SELECT [13, 15]);  i 11 [16, 18];  j 12 [18, 19] cast
                k 13 [19, 23]  receive compute (queue wait 2), outlives the cast
                  l 20 [23, 40]  m token fetch [24, 28] (phase attribute), n GET glance [29, 39]
                                 (o 21 [30, 33], p 22 [33, 38])
                  q (none) [35, 50]  background work overlapping l and r
                  r 29 [40, 60]  spawn (s image fetch [41, 45])
                  t (none) [60, 65]  instance_update after ACTIVE
              u (none) [19, 19.5]  scheduler's reply
    """
    tb = TraceBuilder(random.Random(seed), t0_ns=1_700_000_000_000_000_000 + int(t0_ms * 1e6))
    s: dict[str, SpanRec] = {}
    s["root"] = tb.step(Step.BOOT_REQUEST, 0, 30, kind="SERVER", attributes={"openstack.instance.id": "vm-1"})
    s["a"] = tb.step(Step.API_VALIDATE_TOKEN, 1, 6, parent=s["root"], kind="CLIENT")
    s["b"] = tb.span("GET /v3/auth/tokens", "keystone", 2, 5, parent=s["a"], kind="SERVER")
    s["c"] = tb.step(Step.KEYSTONE_VALIDATE_TOKEN, 3, 4, parent=s["b"])
    s["c2"] = tb.span("keystone.cache_lookup", "keystone", 3.5, 4.5, parent=s["b"])
    s["d"] = tb.step(Step.API_DB_LOOKUP, 6, 8, parent=s["root"], kind="CLIENT")
    s["e"] = tb.step(Step.API_DB_CREATE_INSTANCE, 8, 9, parent=s["root"], kind="CLIENT")
    s["f"] = tb.step(Step.SCHEDULE_CALL, 9, 29, parent=s["root"], kind="CLIENT")
    s["g"] = tb.step(
        Step.SCHEDULER_RECEIVE,
        10,
        12,
        parent=s["f"],
        kind="CONSUMER",
        attributes={"messaging.harness.queue_wait_ms": 0.5},
    )
    s["h"] = tb.step(Step.SCHEDULER_SELECT_HOST, 12, 16, parent=s["g"])
    s["h1"] = tb.span("SELECT nova.compute_nodes", "nova-scheduler", 13, 15, parent=s["h"], kind="CLIENT")
    s["i"] = tb.step(
        Step.SCHEDULER_CLAIM_HOST,
        16,
        18,
        parent=s["g"],
        kind="CLIENT",
        attributes={"openstack.scheduler.claimed_host": "compute-7"},
    )
    s["j"] = tb.step(Step.SCHEDULER_CAST_BUILD, 18, 19, parent=s["g"], kind="PRODUCER")
    s["u"] = tb.span("send reply", "nova-scheduler", 19, 19.5, parent=s["g"], kind="PRODUCER")
    s["k"] = tb.step(
        Step.COMPUTE_RECEIVE_BUILD,
        19,
        23,
        parent=s["j"],
        kind="CONSUMER",
        attributes={"messaging.harness.queue_wait_ms": 2.0, "openstack.rpc.method": "build_and_run_instance"},
    )
    s["l"] = tb.step(Step.COMPUTE_GET_IMAGE, 23, 40, parent=s["k"])
    s["m"] = tb.span(
        "POST /v3/auth/tokens",
        "nova-compute",
        24,
        28,
        parent=s["l"],
        kind="CLIENT",
        attributes={"openstack.boot.phase": "token_validation", "openstack.boot.substep": "token_fetch"},
    )
    s["n"] = tb.span("GET /v2/images/{image_id}", "nova-compute", 29, 39, parent=s["l"], kind="CLIENT")
    s["o"] = tb.step(Step.GLANCE_VALIDATE_TOKEN, 30, 33, parent=s["n"], kind="CLIENT")
    s["p"] = tb.step(Step.GLANCE_RETURN_IMAGE, 33, 38, parent=s["n"])
    s["q"] = tb.span("nova.compute.heartbeat", "nova-compute", 35, 50, parent=s["k"])
    s["r"] = tb.step(Step.SPAWN, 40, 60, parent=s["k"], attributes={"openstack.host": "compute-7"})
    s["s"] = tb.span("nova.virt.image_cache.fetch", "nova-compute", 41, 45, parent=s["r"])
    s["t"] = tb.span("call conductor", "nova-compute", 60, 65, parent=s["k"], kind="CLIENT")
    return s


#: The critical path of :func:`sequential_boot`, in time order: (span, start ms, end ms).
SEQUENTIAL_PATH = [
    ("root", 0, 1),
    ("a", 1, 2),
    ("b", 2, 3.5),
    ("c2", 3.5, 4.5),
    ("b", 4.5, 5),
    ("a", 5, 6),
    ("d", 6, 8),
    ("e", 8, 9),
    ("f", 9, 10),
    ("g", 10, 12),
    ("h", 12, 13),
    ("h1", 13, 15),
    ("h", 15, 16),
    ("i", 16, 18),
    ("j", 18, 19),
    ("k", 19, 23),
    ("l", 23, 24),
    ("m", 24, 28),
    ("l", 28, 29),
    ("n", 29, 30),
    ("o", 30, 33),
    ("p", 33, 38),
    ("n", 38, 39),
    ("l", 39, 40),
    ("r", 40, 41),
    ("s", 41, 45),
    ("r", 45, 60),
]

#: Phase times of :func:`sequential_boot` along that path (ms); they add up to total_ms = 60.
SEQUENTIAL_PHASES = {
    "api": 1 + 2 + 1,  # root 0-1, d, e
    "token_validation": 1 + 1 + 1.5 + 0.5 + 1 + 4 + 3,  # a, a, b, b, c2, m, o
    "scheduling": 1 + 2 + 1 + 2 + 1 + 2 + 1,  # f, g, h, h1, h, i, j
    "instance_info": 4,  # k
    "image": 1 + 1 + 1 + 1 + 1 + 5,  # l x3, n x2, p
    "network": 0,
    "volume": 0,
    "auth": 0,
    "spawn": 1 + 4 + 15,  # r, s, r
}

#: Exclusive (self) time of some spans of :func:`sequential_boot` (ms).
SEQUENTIAL_EXCLUSIVE = {
    "root": 30 - (5 + 2 + 1 + 20),  # children a, d, e, f
    "b": 3 - 1.5,  # c [3,4] and c2 [3.5,4.5] overlap: their union is 1.5
    "f": 20 - 2,  # only g is its child
    "g": 2,  # its children start when it has ended
    "k": 4,  # l, q, r, t all start after it ends
    "l": 17 - 4 - 10,
    "n": 10 - 3 - 5,
    "r": 20 - 4,
    "q": 15,
}


def no_valid_host_boot(seed: int = 2) -> dict[str, SpanRec]:
    """root 3 [0,10] ERROR; f 8 [2,9]; g 9 [3,4]; h 10 [4,7] ERROR 'No valid host was found'."""
    tb = TraceBuilder(random.Random(seed), t0_ns=1_700_000_001_000_000_000)
    s: dict[str, SpanRec] = {}
    s["root"] = tb.step(Step.BOOT_REQUEST, 0, 10, kind="SERVER", error="No valid host was found")
    s["f"] = tb.step(Step.SCHEDULE_CALL, 2, 9, parent=s["root"], kind="CLIENT", error="NoValidHost")
    s["g"] = tb.step(Step.SCHEDULER_RECEIVE, 3, 4, parent=s["f"], kind="CONSUMER")
    s["h"] = tb.step(Step.SCHEDULER_SELECT_HOST, 4, 7, parent=s["g"], error="No valid host was found")
    return s


def user_trace_with_two_boots(seed: int = 3) -> dict[str, SpanRec]:
    """A client span holding the user's auth (1-2) and two boots, the second one incomplete.

    user [0,100]: auth 1 [0,5] (2 [1,4]); boot A 3 [5,15] with spawn 29 [10,14];
    boot B 3 [20,30] with nothing after it (the run stopped).
    """
    tb = TraceBuilder(random.Random(seed), t0_ns=1_700_000_002_000_000_000)
    s: dict[str, SpanRec] = {}
    s["user"] = tb.span("locust boot", "locust", 0, 100, kind="CLIENT")
    s["auth"] = tb.step(Step.AUTH_REQUEST, 0, 5, parent=s["user"], kind="SERVER")
    s["issue"] = tb.step(Step.AUTH_ISSUE_TOKEN, 1, 4, parent=s["auth"])
    s["A"] = tb.step(Step.BOOT_REQUEST, 5, 15, parent=s["user"], kind="SERVER")
    s["A29"] = tb.step(Step.SPAWN, 10, 14, parent=s["A"])
    s["B"] = tb.step(Step.BOOT_REQUEST, 20, 30, parent=s["user"], kind="SERVER")
    return s


def rpc_boot(seed: int = 4) -> dict[str, SpanRec]:
    """RPC shapes: a consumer whose work runs in its children after it, an awaited reply, and a
    cast whose consumer outlives the step that sent it (nobody waits for it).

    ::

        root 3 [0, 10];  cast 12 [1, 2] (PRODUCER, operation cast)
          k 13 [2, 3] receive;  its work: c14 call [3, 20], l23 [20, 30], v26 [30, 35], r29 [35, 45]
            c14 -> r15 receive [4, 5] -> s16 [5, 8], s17 [8, 12], s18 send reply [12, 13]
                                            -> s19 receive reply [12.5, 19]
            l23 -> n cast q-agent-notifier [25, 26] -> agent receive [25.5, 40] (async, past 26's start)
    """
    tb = TraceBuilder(random.Random(seed), t0_ns=1_700_000_003_000_000_000)
    cast = {"messaging.operation.name": "cast"}
    s: dict[str, SpanRec] = {}
    s["root"] = tb.step(Step.BOOT_REQUEST, 0, 10, kind="SERVER")
    s["cast"] = tb.step(Step.SCHEDULER_CAST_BUILD, 1, 2, parent=s["root"], kind="PRODUCER", attributes=cast)
    s["k"] = tb.step(Step.COMPUTE_RECEIVE_BUILD, 2, 3, parent=s["cast"], kind="CONSUMER")
    s["c14"] = tb.step(Step.COMPUTE_CALL_CONDUCTOR, 3, 20, parent=s["k"], kind="CLIENT")
    s["r15"] = tb.step(Step.CONDUCTOR_RECEIVE, 4, 5, parent=s["c14"], kind="CONSUMER")
    s["s16"] = tb.step(Step.CONDUCTOR_LOOKUP_INSTANCE, 5, 8, parent=s["r15"])
    s["s17"] = tb.step(Step.CONDUCTOR_DB_READ, 8, 12, parent=s["r15"], kind="CLIENT")
    s["s18"] = tb.step(
        Step.CONDUCTOR_REPLY,
        12,
        13,
        parent=s["r15"],
        kind="PRODUCER",
        attributes={"messaging.operation.name": "reply"},
    )
    s["s19"] = tb.step(Step.COMPUTE_RECEIVE_INSTANCE_INFO, 12.5, 19, parent=s["s18"], kind="CONSUMER")
    s["l23"] = tb.step(Step.COMPUTE_GET_NETWORK, 20, 30, parent=s["k"])
    s["n"] = tb.span(
        "cast q-agent-notifier", "neutron-server", 25, 26, parent=s["l23"], kind="PRODUCER", attributes=cast
    )
    s["agent"] = tb.span(
        "receive q-agent-notifier", "neutron-agent", 25.5, 40, parent=s["n"], kind="CONSUMER"
    )
    s["v26"] = tb.step(Step.COMPUTE_GET_VOLUME, 30, 35, parent=s["k"])
    s["r29"] = tb.step(Step.SPAWN, 35, 45, parent=s["k"])
    return s


#: Phase times of :func:`rpc_boot` (ms), worked out along its critical path.
RPC_PHASES = {
    "api": 1,
    "scheduling": 1,
    "instance_info": 1 + 2 + 1 + 3 + 4 + 0.5 + 6.5,
    "network": 9 + 1,
    "volume": 5,
    "spawn": 10,
    "token_validation": 0,
    "image": 0,
}
#: Critical-path time per step of :func:`rpc_boot`: the conductor's steps keep their own time.
RPC_STEPS = {3: 1, 12: 1, 13: 1, 14: 2, 15: 1, 16: 3, 17: 4, 18: 0.5, 19: 6.5, 23: 10, 26: 5, 29: 10}
