"""Shared fixtures: an embedded cloud on free loopback ports, in a temporary run directory."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from harness.cloud import EmbeddedCloud
from harness.config import HostGroup, Ports, Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports() -> Ports:
    """Five distinct free ports (tests run beside other clouds, so never the defaults)."""
    ports: set[int] = set()
    while len(ports) < 5:
        ports.add(free_port())
    k, n, g, ne, c = sorted(ports)
    return Ports(keystone=k, nova=n, glance=g, neutron=ne, cinder=c)


def cloud_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test cloud: fast profile, seeded, free ports, run dir under tmp_path."""
    base: dict[str, Any] = dict(
        run_dir=tmp_path / "run", profile="fast", seed=1234, ports=free_ports(),
        host_groups=[HostGroup(count=8)],
    )
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def make_cloud(tmp_path: Path):
    """Factory: ``async with make_cloud(hosts=4) as cloud: ...`` (stopped and flushed on exit)."""
    clouds: list[EmbeddedCloud] = []

    def factory(**overrides: Any) -> EmbeddedCloud:
        cloud = EmbeddedCloud(cloud_settings(tmp_path, **overrides))
        clouds.append(cloud)
        return cloud

    yield factory


@pytest.fixture
async def cloud(make_cloud) -> AsyncIterator[EmbeddedCloud]:
    async with make_cloud() as c:
        yield c
