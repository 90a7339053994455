"""A running cloud exports its spans over OTLP (gRPC and HTTP) when the standard ``OTEL_*``
variables say so, and a receiver decoding the wire format with opentelemetry-proto gets every span:
service names, boot step attributes and unbroken parent links."""

from __future__ import annotations

import pytest

from harness.client import OpenStackClient
from harness.config import HostGroup
from tests.real.otlp_receiver import GrpcReceiver, HttpReceiver
from tests.spanfile import read_spans

EXPECTED_SERVICES = {"keystone", "nova-api", "nova-scheduler", "nova-conductor", "nova-compute",
                     "glance-api", "neutron-server", "cinder-api"}


def check_boot_export(received, server_ids, *, run_id: str | None = None) -> None:
    """Every boot is one trace with steps 3..29 once each, rooted at nova-api, parents all present."""
    assert EXPECTED_SERVICES <= {s.service for s in received}
    by_trace: dict[str, list] = {}
    for s in received:
        by_trace.setdefault(s.trace_id, []).append(s)
    boots = {}
    for spans in by_trace.values():
        root = [s for s in spans if s.step == 3]
        if root:
            boots[root[0].attrs.get("openstack.instance.id")] = spans
    assert set(boots) == set(server_ids)
    for spans in boots.values():
        ids = {s.span_id for s in spans}
        steps = sorted(s.step for s in spans if s.step is not None)
        assert steps == list(range(3, 30)), steps
        roots = [s for s in spans if s.parent_id is None]
        assert [(r.service, r.step) for r in roots] == [("nova-api", 3)]
        orphans = [(s.service, s.name) for s in spans if s.parent_id and s.parent_id not in ids]
        assert not orphans, orphans
        assert len({s.service for s in spans}) >= 8  # the trace crosses every service
        if run_id is not None:
            assert {s.resource.get("harness.run.id") for s in spans} == {run_id}


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
async def test_cloud_exports_otlp_to_a_receiver(make_cloud, monkeypatch, protocol):
    receiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    with receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        cloud = make_cloud(host_groups=[HostGroup(count=2)])
        async with cloud:
            async with OpenStackClient(cloud.auth_url) as client:
                await client.authenticate()
                image = next(i["id"] for i in await client.images() if i["name"].startswith("cirros"))
                servers = [await client.create_server(f"otlp-{i}", image=image) for i in range(2)]
                for s in servers:
                    assert (await client.wait_for_status(s["id"], timeout=30, interval=0.1))["status"] == "ACTIVE"
        # stopping the cloud flushed every provider through the OTLP exporter
        received = receiver.spans()
    check_boot_export(received, [s["id"] for s in servers], run_id=cloud.run_id)
    # the receiver got exactly the spans the run's file holds (nothing lost on the wire)
    in_file = {s.span_id for s in read_spans(cloud.run_dir / "spans.jsonl")}
    assert {s.span_id for s in received} == in_file
    assert all(s.resource.get("service.namespace") == "openstack" for s in received)
