"""Synthetic OTLP traces: boots with known timings, for tests and the analysis benchmark.

:class:`TraceBuilder` writes spans exactly as the harness's file exporter does (OTLP/JSON lines,
hex ids, integers as strings, one resource per service), so a test can state a trace's timings by
hand and check what the analysis computes from them. :func:`harness_like_boot` lays out a boot with
the harness's span structure (steps 3-29 with their HTTP, token-fetch, RPC and DB children) and
random step durations, which is what the benchmark writes a million spans of.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from harness.steps import ATTR_PHASE, ATTR_STEP, CATALOGUE, TOKEN_FETCH_PHASE, Step

MS = 1_000_000  # ns


@dataclass
class SpanRec:
    """One span as the analysis sees it (times in ns since the epoch)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    service: str
    kind: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)
    status_code: str = "UNSET"
    status_message: str | None = None


def _any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_any_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _kv(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _any_value(v)} for k, v in attrs.items()]


def span_json(s: SpanRec) -> dict[str, Any]:
    out: dict[str, Any] = {"traceId": s.trace_id, "spanId": s.span_id}
    if s.parent_span_id:
        out["parentSpanId"] = s.parent_span_id
    out.update(
        name=s.name,
        kind=f"SPAN_KIND_{s.kind}",
        startTimeUnixNano=str(s.start_ns),
        endTimeUnixNano=str(s.end_ns),
    )
    if s.attributes:
        out["attributes"] = _kv(s.attributes)
    status: dict[str, Any] = {}
    if s.status_code != "UNSET":
        status["code"] = f"STATUS_CODE_{s.status_code}"
    if s.status_message:
        status["message"] = s.status_message
    out["status"] = status
    out["flags"] = 256  # as the SDK's exporter writes it (parent-is-remote known)
    return out


def otlp_request(spans: Iterable[SpanRec], resource: dict[str, Any] | None = None) -> dict[str, Any]:
    """An ``ExportTraceServiceRequest`` in OTLP/JSON, one resource per service."""
    by_service: dict[str, list[SpanRec]] = defaultdict(list)
    for s in spans:
        by_service[s.service].append(s)
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _kv({"service.name": svc, **(resource or {})})},
                "scopeSpans": [{"scope": {"name": "harness"}, "spans": [span_json(s) for s in group]}],
            }
            for svc, group in by_service.items()
        ]
    }


def write_jsonl(path: str | Path, requests: Iterable[dict[str, Any]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for req in requests:
            fh.write(json.dumps(req, separators=(",", ":")) + "\n")
    return path


class TraceBuilder:
    """Builds one trace span by span; times are milliseconds from ``t0_ns``."""

    def __init__(
        self, rng: random.Random, *, t0_ns: int = 1_700_000_000 * 10**9, trace_id: str | None = None
    ) -> None:
        self.rng = rng
        self.t0_ns = t0_ns
        self.trace_id = trace_id or f"{rng.getrandbits(128):032x}"
        self.spans: list[SpanRec] = []

    def span(
        self,
        name: str,
        service: str,
        start_ms: float,
        end_ms: float,
        *,
        parent: SpanRec | None = None,
        step: Step | int | None = None,
        kind: str = "INTERNAL",
        attributes: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> SpanRec:
        attrs: dict[str, Any] = {}
        if step is not None:
            attrs[ATTR_STEP] = int(step)
            attrs[ATTR_PHASE] = CATALOGUE[Step(step)].phase.value
        attrs.update(attributes or {})
        rec = SpanRec(
            trace_id=self.trace_id,
            span_id=f"{self.rng.getrandbits(64):016x}",
            parent_span_id=parent.span_id if parent else None,
            name=name,
            service=service,
            kind=kind,
            start_ns=self.t0_ns + round(start_ms * MS),
            end_ns=self.t0_ns + round(end_ms * MS),
            attributes=attrs,
            status_code="ERROR" if error else "UNSET",
            status_message=error,
        )
        self.spans.append(rec)
        return rec

    def step(
        self, step: Step, start_ms: float, end_ms: float, *, parent: SpanRec | None = None, **kw: Any
    ) -> SpanRec:
        """A step's span, named and placed in its service as the catalogue says."""
        info = CATALOGUE[step]
        return self.span(info.span_name, info.service, start_ms, end_ms, parent=parent, step=step, **kw)


# -- a boot with the harness's span structure ---------------------------------------------------------
_PORTS = {"keystone": 5000, "nova-api": 8774, "glance-api": 9292, "neutron-server": 9696, "cinder-api": 8776}


def _http_client(method: str, server: str, template: str, status: int = 200) -> dict[str, Any]:
    port = _PORTS.get(server, 80)
    return {
        "http.request.method": method,
        "server.address": "127.0.0.1",
        "server.port": port,
        "url.full": f"http://127.0.0.1:{port}{template}",
        "url.template": template,
        "http.response.status_code": status,
    }


def _http_server(method: str, server: str, route: str, caller: str, status: int = 200) -> dict[str, Any]:
    return {
        "http.request.method": method,
        "url.path": route,
        "url.scheme": "http",
        "server.address": "127.0.0.1",
        "server.port": _PORTS.get(server, 80),
        "client.address": "127.0.0.1",
        "network.protocol.version": "1.1",
        "user_agent.original": f"harness-{caller}",
        "http.route": route,
        "http.response.status_code": status,
    }


def _messaging(
    rng: random.Random, operation: str, destination: str, *, receive: bool = False
) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "messaging.system": "harness.memory",
        "messaging.operation.type": "receive" if receive else "send",
        "messaging.operation.name": "receive" if receive else operation,
        "messaging.destination.name": destination,
        "messaging.destination.template": destination,
        "messaging.message.id": f"{rng.getrandbits(128):032x}",
    }
    if receive:
        attrs["messaging.consumer.group.name"] = destination
    else:
        attrs["messaging.rabbitmq.destination.routing_key"] = destination
        attrs["openstack.rpc.exchange"] = "nova"
    return attrs


def _db(operation: str, table: str) -> dict[str, Any]:
    return {
        "db.system.name": "sqlite",
        "db.namespace": "nova",
        "db.operation.name": operation,
        "db.collection.name": table,
    }


class _Clock:
    def __init__(self, rng: random.Random, t: float) -> None:
        self.rng, self.t = rng, t

    def take(self, lo: float, hi: float) -> tuple[float, float]:
        start = self.t
        self.t += self.rng.uniform(lo, hi)
        return start, self.t

    def gap(self, ms: float = 0.05) -> None:
        self.t += ms


def _rest_call(
    tb: TraceBuilder,
    c: _Clock,
    parent: SpanRec,
    name: str,
    server: str,
    validate_step: Step | None,
    work_step: Step | None,
    caller_service: str,
) -> None:
    """client span -> server span -> (token validation -> keystone) + work span."""
    start = c.t
    method, route = name.split(" ", 1)
    client = tb.span(
        name,
        caller_service,
        start,
        start,
        parent=parent,
        kind="CLIENT",
        attributes=_http_client(method, server, route),
    )
    c.gap(0.3)
    srv = tb.span(
        name,
        server,
        c.t,
        c.t,
        parent=client,
        kind="SERVER",
        attributes=_http_server(method, server, route, caller_service),
    )
    s0, s1 = c.take(1.0, 3.0)
    val = tb.span(
        "GET /v3/auth/tokens",
        server,
        s0,
        s1,
        parent=srv,
        step=validate_step,
        kind="CLIENT",
        attributes=_http_client("GET", "keystone", "/v3/auth/tokens"),
    )
    tb.span(
        "GET /v3/auth/tokens",
        "keystone",
        s0 + 0.2,
        s1 - 0.2,
        parent=val,
        kind="SERVER",
        attributes=_http_server("GET", "keystone", "/v3/auth/tokens", server),
    )
    if work_step is not None:
        w0, w1 = c.take(1.0, 3.0)
        tb.step(work_step, w0, w1, parent=srv)
    c.gap(0.1)
    srv.end_ns = tb.t0_ns + round(c.t * MS)
    c.gap(0.3)
    client.end_ns = tb.t0_ns + round(c.t * MS)


def _token_fetch(tb: TraceBuilder, c: _Clock, parent: SpanRec) -> None:
    start, _ = c.take(2.0, 4.0)
    fetch = tb.span(
        "POST /v3/auth/tokens",
        "nova-compute",
        start,
        c.t,
        parent=parent,
        kind="CLIENT",
        attributes={
            **_http_client("POST", "keystone", "/v3/auth/tokens", 201),
            ATTR_PHASE: TOKEN_FETCH_PHASE.value,
            "openstack.boot.substep": "token_fetch",
        },
    )
    # a service user's token issue is the server span's own time (as the harness traces it)
    tb.span(
        "POST /v3/auth/tokens",
        "keystone",
        start + 0.3,
        c.t - 0.3,
        parent=fetch,
        kind="SERVER",
        attributes=_http_server("POST", "keystone", "/v3/auth/tokens", "nova-compute", 201),
    )
    c.gap(0.05)


def _rpc(
    tb: TraceBuilder,
    c: _Clock,
    parent: SpanRec,
    send_step: Step | None,
    recv_step: Step | None,
    name: str,
    service: str,
    kind: str,
    queue_ms: float,
) -> SpanRec:
    """A message: the receive span starts at send time, so its queue wait is inside it."""
    recv_start = c.t
    c.t += queue_ms + 0.2
    attrs = {
        **_messaging(tb.rng, "receive", service, receive=True),
        "messaging.harness.queue_wait_ms": queue_ms,
        "openstack.rpc.method": name,
    }
    if recv_step is not None:
        return tb.step(recv_step, recv_start, c.t, parent=parent, kind="CONSUMER", attributes=attrs)
    return tb.span(
        f"receive {name}", service, recv_start, c.t, parent=parent, kind="CONSUMER", attributes=attrs
    )


def harness_like_boot(
    tb: TraceBuilder,
    rng: random.Random,
    *,
    start_ms: float = 0.0,
    host: str = "compute-1",
    no_valid_host: bool = False,
) -> SpanRec:
    """Lay out one boot as the harness traces it; returns its step-3 span."""
    c = _Clock(rng, start_ms)
    instance = f"{rng.getrandbits(128):032x}"
    root = tb.step(
        Step.BOOT_REQUEST,
        c.t,
        c.t,
        kind="SERVER",
        attributes={"openstack.instance.id": instance, "http.request.method": "POST"},
    )
    c.gap(1.0)
    _rest_call(
        tb,
        c,
        root,
        "GET /v3/auth/tokens",
        "keystone",
        Step.API_VALIDATE_TOKEN,
        Step.KEYSTONE_VALIDATE_TOKEN,
        "nova-api",
    )
    for step in (Step.API_DB_LOOKUP, Step.API_DB_CREATE_INSTANCE):
        s0, s1 = c.take(1.0, 3.0)
        tb.step(
            step, s0, s1, parent=root, kind="CLIENT", attributes=_db(*CATALOGUE[step].span_name.split(" "))
        )
    c0 = c.t
    call = tb.step(
        Step.SCHEDULE_CALL,
        c0,
        c0,
        parent=root,
        kind="CLIENT",
        attributes=_messaging(rng, "call", "scheduler"),
    )
    c.gap(0.2)
    recv = _rpc(
        tb,
        c,
        call,
        None,
        Step.SCHEDULER_RECEIVE,
        "select_destinations",
        "nova-scheduler",
        "CONSUMER",
        rng.expovariate(1 / 0.5),
    )
    s0, s1 = c.take(2.0, 4.0)
    select = tb.step(
        Step.SCHEDULER_SELECT_HOST,
        s0,
        s1,
        parent=recv,
        attributes={
            "openstack.scheduler.round": 1,
            "openstack.scheduler.filters": ["ComputeFilter=8", "RamFilter=8"],
        },
        error="No valid host was found" if no_valid_host else None,
    )
    tb.span(
        "SELECT nova.compute_nodes",
        "nova-scheduler",
        s0 + 0.3,
        s1 - 0.3,
        parent=select,
        kind="CLIENT",
        attributes=_db("SELECT", "compute_nodes"),
    )
    if no_valid_host:
        c.gap(0.2)
        call.end_ns = tb.t0_ns + round(c.t * MS)
        root.end_ns = tb.t0_ns + round((c.t + 0.5) * MS)
        root.status_code, root.status_message = "ERROR", "No valid host was found"
        return root
    s0, s1 = c.take(1.0, 3.0)
    tb.step(
        Step.SCHEDULER_CLAIM_HOST,
        s0,
        s1,
        parent=recv,
        kind="CLIENT",
        attributes={**_db("UPDATE", "compute_nodes"), "openstack.scheduler.claimed_host": host},
    )
    s0, s1 = c.take(0.5, 1.5)
    cast = tb.step(
        Step.SCHEDULER_CAST_BUILD,
        s0,
        s1,
        parent=recv,
        kind="PRODUCER",
        attributes=_messaging(rng, "cast", f"compute.{host}"),
    )
    call.end_ns = tb.t0_ns + round((c.t + 0.1) * MS)
    root.end_ns = tb.t0_ns + round((c.t + 0.5) * MS)
    c.t = s0 + 0.1
    build = _rpc(
        tb,
        c,
        cast,
        None,
        Step.COMPUTE_RECEIVE_BUILD,
        "build_and_run_instance",
        "nova-compute",
        "CONSUMER",
        rng.expovariate(1 / 1.0),
    )
    cc0 = c.t
    ccall = tb.step(
        Step.COMPUTE_CALL_CONDUCTOR,
        cc0,
        cc0,
        parent=build,
        kind="CLIENT",
        attributes=_messaging(rng, "call", "conductor"),
    )
    c.gap(0.1)
    crecv = _rpc(
        tb,
        c,
        ccall,
        None,
        Step.CONDUCTOR_RECEIVE,
        "instance_get",
        "nova-conductor",
        "CONSUMER",
        rng.expovariate(1 / 0.5),
    )
    for step in (Step.CONDUCTOR_LOOKUP_INSTANCE, Step.CONDUCTOR_DB_READ):
        s0, s1 = c.take(1.0, 3.0)
        tb.step(
            step,
            s0,
            s1,
            parent=crecv,
            attributes=_db("SELECT", "instances")
            if step == Step.CONDUCTOR_DB_READ
            else {"openstack.instance.id": instance},
        )
    s0, s1 = c.take(0.3, 0.6)
    reply = tb.step(
        Step.CONDUCTOR_REPLY,
        s0,
        s1,
        parent=crecv,
        kind="PRODUCER",
        attributes=_messaging(rng, "reply", "reply_{id}"),
    )
    c.t = s0 + 0.05
    _rpc(
        tb,
        c,
        reply,
        None,
        Step.COMPUTE_RECEIVE_INSTANCE_INFO,
        "reply",
        "nova-compute",
        "CONSUMER",
        rng.expovariate(1 / 0.3),
    )
    ccall.end_ns = tb.t0_ns + round(c.t * MS)
    c.gap(0.05)
    for step, name, server, validate, work in (
        (
            Step.COMPUTE_GET_IMAGE,
            "GET /v2/images/{image_id}",
            "glance-api",
            Step.GLANCE_VALIDATE_TOKEN,
            Step.GLANCE_RETURN_IMAGE,
        ),
        (
            Step.COMPUTE_GET_NETWORK,
            "POST /v2.0/ports",
            "neutron-server",
            Step.NEUTRON_VALIDATE_TOKEN,
            Step.NEUTRON_RETURN_NETWORK,
        ),
        (
            Step.COMPUTE_GET_VOLUME,
            "GET /v3/{project_id}/attachments",
            "cinder-api",
            Step.CINDER_VALIDATE_TOKEN,
            Step.CINDER_RETURN_VOLUME,
        ),
    ):
        s0, _ = c.take(1.0, 3.0)
        outer = tb.step(step, s0, s0, parent=build)
        _token_fetch(tb, c, outer)  # then the catalog lookup: an event in the harness, no span
        c.gap(0.05)
        _rest_call(tb, c, outer, name, server, validate, work, "nova-compute")
        outer.end_ns = tb.t0_ns + round(c.t * MS)
        c.gap(0.05)
    s0, s1 = c.take(8.0, 12.0)
    tb.step(
        Step.SPAWN,
        s0,
        s1,
        parent=build,
        attributes={"openstack.host": host, "openstack.instance.id": instance},
    )
    c.gap(0.05)
    u0, u1 = c.take(0.5, 1.5)
    tb.span(
        "call conductor",
        "nova-compute",
        u0,
        u1,
        parent=build,
        kind="CLIENT",
        attributes={**_messaging(rng, "call", "conductor"), "openstack.rpc.method": "instance_update"},
    )
    return root


def synthetic_run(
    path: str | Path,
    *,
    n_spans: int,
    seed: int = 0,
    hosts: int = 64,
    boots_per_line: int = 40,
    resource: dict[str, Any] | None = None,
    error_rate: float = 0.01,
) -> dict[str, int]:
    """Write boots until ``n_spans`` spans (one boot every ~5 ms); returns counts written."""
    rng = random.Random(seed)
    resource = {
        "service.namespace": "openstack",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "harness.run.id": f"synthetic-{seed}",
        "harness.scheduler": "filter_scheduler",
        "harness.profile": "synthetic",
        "harness.hosts": hosts,
        **(resource or {}),
    }
    written = boots = 0

    def requests() -> Iterable[dict[str, Any]]:
        nonlocal written, boots
        batch: list[SpanRec] = []
        t = 0.0
        while written < n_spans:
            tb = TraceBuilder(rng, t0_ns=1_700_000_000 * 10**9)
            harness_like_boot(
                tb,
                rng,
                start_ms=t,
                host=f"compute-{rng.randrange(hosts)}",
                no_valid_host=rng.random() < error_rate,
            )
            t += rng.expovariate(1 / 5.0)
            spans = tb.spans[: n_spans - written]
            batch.extend(spans)
            written += len(spans)
            boots += 1
            if boots % boots_per_line == 0:
                yield otlp_request(batch, resource)
                batch = []
        if batch:
            yield otlp_request(batch, resource)

    write_jsonl(path, requests())
    return {"spans": written, "boots": boots}


def as_jsonl(spans: Sequence[SpanRec], resource: dict[str, Any] | None = None) -> bytes:
    """Spans as the bytes of a one-line spans file."""
    return (json.dumps(otlp_request(spans, resource), separators=(",", ":")) + "\n").encode()
