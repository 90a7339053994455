"""Small builders for scheduler tests: hosts, requests, and a local 'claim' that applies a choice."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Any

from harness.scheduling import HostState, RequestSpec, ServerGroup


def host(name: str, **kw: Any) -> HostState:
    base: dict[str, Any] = dict(vcpus=8, memory_mb=16384, local_gb=200, cpu_allocation_ratio=4.0,
                                ram_allocation_ratio=1.0, disk_allocation_ratio=1.0)
    base.update(kw)
    return HostState(host=name, **base)


def hosts(n: int, **kw: Any) -> list[HostState]:
    return [host(f"h{i}", **kw) for i in range(n)]


def spec(vcpus: int = 1, memory_mb: int = 1024, disk_gb: int = 10, **kw: Any) -> RequestSpec:
    return RequestSpec(instance_uuid=kw.pop("instance_uuid", "inst"), vcpus=vcpus, memory_mb=memory_mb,
                       disk_gb=disk_gb, **kw)


def group(policy: str, member_hosts: dict[str, int] | None = None, max_per_host: int = 1) -> ServerGroup:
    return ServerGroup(uuid="g", policy=policy, member_hosts=MappingProxyType(dict(member_hosts or {})),
                       max_server_per_host=max_per_host)


def place(states: list[HostState], name: str, req: RequestSpec) -> list[HostState]:
    """The hosts after ``req`` was claimed on ``name`` (what the DB claim does to usage)."""
    out = []
    for h in states:
        if h.host == name:
            h = replace(h, vcpus_used=h.vcpus_used + req.vcpus, memory_mb_used=h.memory_mb_used + req.memory_mb,
                        local_gb_used=h.local_gb_used + req.disk_gb, running_vms=h.running_vms + 1,
                        generation=h.generation + 1)
        out.append(h)
    return out
