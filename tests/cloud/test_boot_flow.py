"""End to end in the embedded cloud: every boot runs the 29 steps and is one trace."""

from __future__ import annotations

import asyncio
import base64
import json
import logging

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from harness.client import OpenStackClient
from harness.config import HostGroup
from harness.steps import ATTR_PHASE, CATALOGUE, Step
from tests.spanfile import boot_traces, read_spans

CIRROS = "cirros-0.6.2-x86_64-disk"


async def _image_id(client: OpenStackClient, name: str = CIRROS) -> str:
    return next(i["id"] for i in await client.images() if i["name"] == name)


def assert_complete_boot(spans, *, expect_error: bool = False) -> None:
    """All 29 steps... well: 3..29 in this trace, each once, with an unbroken parent chain."""
    by_id = {s.span_id: s for s in spans}
    steps = {}
    for s in spans:
        if s.step is not None:
            assert s.step not in steps, f"step {s.step} appears twice"
            steps[s.step] = s
            assert s.attrs[ATTR_PHASE] == CATALOGUE[Step(s.step)].phase.value
    assert sorted(steps) == list(range(3, 30)), sorted(steps)
    assert len({s.trace_id for s in spans}) == 1
    roots = [s for s in spans if s.parent_id is None]
    assert len(roots) == 1 and roots[0].step == 3, [r.name for r in roots]
    for s in spans:
        if s.parent_id is not None:
            assert s.parent_id in by_id, f"{s.service} {s.name} has a parent outside its trace"
    # each step from 4 on descends from step 3
    for s in steps.values():
        node = s
        while node.parent_id is not None:
            node = by_id[node.parent_id]
        assert node.step == 3
    # the steps start in the seed's order
    starts = [steps[n].start for n in range(3, 30)]
    assert starts == sorted(starts), [n for n, (a, b) in enumerate(zip(starts, starts[1:]), 3) if a > b]


async def test_one_boot_is_one_trace_with_every_step(cloud):
    async with OpenStackClient(cloud.auth_url) as client:
        await client.authenticate()
        server = await client.create_server("vm", flavor="1", image=await _image_id(client))
        final = await client.wait_for_status(server["id"], timeout=30)
        assert final["status"] == "ACTIVE", final
        assert final["addresses"]["private"][0]["addr"].startswith("10.0.")
    path = cloud.run_dir / "spans.jsonl"
    await cloud.stop()
    spans = read_spans(path)
    # steps 1 and 2: the client's authentication, in their own trace
    assert {1, 2} <= {s.step for s in spans if s.step}
    boots = boot_traces(spans)
    assert list(boots) == [server["id"]]
    trace = boots[server["id"]]
    assert_complete_boot(trace)
    services = {s.service for s in spans}
    assert len(services) >= 8, services
    assert {"keystone", "nova-api", "nova-scheduler", "nova-conductor", "nova-compute", "glance-api",
            "neutron-server", "cinder-api"} <= services
    # queue waits are measured on every receive step
    for s in trace:
        if s.step in (9, 13, 15, 19):
            assert s.attrs["messaging.harness.queue_wait_ms"] >= 0
            assert s.attrs["messaging.operation.type"] == "receive"
    # semantic conventions: HTTP server/client, messaging and DB attributes
    step3 = next(s for s in trace if s.step == 3)
    assert step3.attrs["http.route"] == "/v2.1/servers" and step3.attrs["http.response.status_code"] == 202
    step7 = next(s for s in trace if s.step == 7)
    assert step7.attrs["db.system.name"] == "sqlite" and step7.attrs["db.operation.name"] == "INSERT"
    step8 = next(s for s in trace if s.step == 8)
    assert step8.attrs["messaging.destination.name"] == "scheduler"


async def test_span_file_is_otlp_json(cloud):
    async with OpenStackClient(cloud.auth_url) as client:
        await client.authenticate()
        server = await client.create_server("vm", image=await _image_id(client))
        await client.wait_for_status(server["id"], timeout=30)
    path = cloud.run_dir / "spans.jsonl"
    await cloud.stop()
    n = 0
    for line in path.read_text().splitlines():
        data = json.loads(line)
        # OTLP/JSON carries ids as hex; protobuf's JSON mapping wants base64 for bytes fields.
        for rs in data["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in span:
                            assert len(span[key]) in (16, 32)
                            span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
        msg = json_format.ParseDict(data, ExportTraceServiceRequest())
        n += sum(len(ss.spans) for rs in msg.resource_spans for ss in rs.scope_spans)
        for rs in msg.resource_spans:
            keys = {a.key for a in rs.resource.attributes}
            assert {"service.name", "service.namespace", "service.instance.id"} <= keys
    assert n > 40


async def test_concurrent_boots_never_overcommit(make_cloud):
    # 8 hosts of 4 GB RAM: m1.small (2 GB) fits twice per host, so 16 of 100 boots fit.
    cloud = make_cloud(host_groups=[HostGroup(count=8, vcpus=8, memory_mb=4096, local_gb=200)])
    async with cloud:
        async with OpenStackClient(cloud.auth_url) as client:
            await client.authenticate()
            image = await _image_id(client)
            servers = await asyncio.gather(*(client.create_server(f"vm-{i}", flavor="2", image=image)
                                             for i in range(100)))
            finals = await asyncio.gather(*(client.wait_for_status(s["id"], timeout=120) for s in servers))
            nodes = await cloud.db.list_compute_nodes()
        path = cloud.run_dir / "spans.jsonl"
    active = [f for f in finals if f["status"] == "ACTIVE"]
    errors = [f for f in finals if f["status"] == "ERROR"]
    assert len(active) + len(errors) == 100
    assert len(active) == 16
    assert all(f["fault"]["message"].startswith("No valid host was found") for f in errors)
    for node in nodes:
        assert node["memory_mb_used"] <= node["memory_mb"] * node["ram_allocation_ratio"]
        assert node["memory_mb_used"] == 2048 * node["running_vms"]
    traces = boot_traces(read_spans(path))
    for f in active:
        assert_complete_boot(traces[f["id"]])


async def test_delete_frees_resources_and_port(cloud, caplog):
    caplog.set_level(logging.WARNING, logger="opentelemetry")
    async with OpenStackClient(cloud.auth_url) as client:
        await client.authenticate()
        server = await client.create_server("vm", flavor="3", image=await _image_id(client))
        final = await client.wait_for_status(server["id"], timeout=30)
        host = next(n for n in await cloud.db.list_compute_nodes() if n["running_vms"])
        assert host["memory_mb_used"] == 4096
        await client.delete_server(server["id"])
        await client.wait_for_delete(server["id"], timeout=30)
        nodes = await cloud.db.list_compute_nodes()
        assert all(n["memory_mb_used"] == 0 and n["running_vms"] == 0 for n in nodes)
        assert final["status"] == "ACTIVE"
        neutron = cloud.service("neutron-server")
        assert not [p for p in neutron.plugin.ports.values() if p["device_id"] == server["id"]]
    # nothing touched a span after it ended (a cast's method runs after its receive span)
    assert not [r.getMessage() for r in caplog.records if "ended span" in r.getMessage()]
