"""One typed settings object every command reads.

Precedence, highest first: command-line flags (passed as keyword arguments), environment variables
(``HARNESS_`` prefix, ``__`` between nested names, e.g. ``HARNESS_PORTS__NOVA=18774``), a TOML
settings file (``--config FILE`` or ``HARNESS_CONFIG``), then the defaults below. Each knob says what
it simulates. The run's full settings are written beside its results (``settings.json``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Ports(BaseModel):
    """TCP ports of the HTTP services (OpenStack's well-known defaults)."""

    keystone: int = 5000
    nova: int = 8774
    glance: int = 9292
    neutron: int = 9696
    cinder: int = 8776


class Account(BaseModel):
    """A seeded Keystone user with one role on one project (domain ``Default``)."""

    name: str
    password: str
    project: str
    role: str


class HostGroup(BaseModel):
    """A group of identical fake compute hosts (heterogeneous clouds are several groups)."""

    count: int = Field(8, ge=0, le=10000)
    vcpus: int = Field(32, ge=1)
    memory_mb: int = Field(131072, ge=1)
    local_gb: int = Field(2000, ge=1)
    availability_zone: str = "nova"
    arch: str = "x86_64"
    prefix: str = "compute"


def _default_accounts() -> list[Account]:
    return [
        Account(name="demo", password="demo", project="demo", role="member"),
        Account(name="admin", password="admin", project="admin", role="admin"),
        # Service users: each API service validates tokens with its own service token (as
        # keystonemiddleware does), and nova-compute authenticates as nova in steps 20, 23, 26.
        *(
            Account(name=svc, password=f"{svc}-service-secret", project="service", role="service")
            for svc in ("nova", "glance", "neutron", "cinder")
        ),
    ]


class Settings(BaseSettings):
    """Everything a cloud, a load run or a report is configured by."""

    model_config = SettingsConfigDict(
        env_prefix="HARNESS_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    bind_host: str = Field("127.0.0.1", description="address every service listens on")
    public_host: str = Field(
        "", description="host name put in the service catalog (defaults to bind_host)"
    )
    service_hosts: dict[str, str] = Field(
        default_factory=dict,
        description="host name of one service in the catalog, by port name (one container per "
        "service: {\"nova\": \"nova-api\", ...}); others use public_host",
    )
    ports: Ports = Ports()
    region: str = Field("RegionOne", description="the region of every catalog endpoint")

    profile: str = Field("fast", description="latency profile: zero, fast, realistic or a TOML path")
    seed: int = Field(42, description="seed of every random generator in the cloud")

    hosts: int | None = Field(
        None, ge=1, le=10000, description="number of fake compute hosts (shortcut for one group)"
    )
    host_groups: list[HostGroup] = Field(default_factory=lambda: [HostGroup()])
    max_concurrent_builds: int = Field(
        10, ge=1, description="nova-compute's limit of builds running at once on one host"
    )
    cpu_allocation_ratio: float = Field(4.0, gt=0, description="Nova's initial_cpu_allocation_ratio")
    ram_allocation_ratio: float = Field(1.0, gt=0, description="Nova's initial_ram_allocation_ratio")
    disk_allocation_ratio: float = Field(
        1.0, gt=0, description="Nova's initial_disk_allocation_ratio"
    )

    scheduler: str = Field(
        "filter_scheduler", description="scheduling algorithm, by name (`harness schedulers` lists them)"
    )
    scheduler_options: dict[str, Any] = Field(
        default_factory=dict,
        description="the algorithm's options, e.g. {ram_weight_multiplier = -1.0} (Nova's "
        "[filter_scheduler] names); `harness schedulers NAME` lists them with their defaults",
    )
    scheduler_workers: int = Field(2, ge=1, description="nova-scheduler workers taking requests")
    conductor_workers: int = Field(4, ge=1, description="nova-conductor workers taking requests")
    max_attempts: int = Field(3, ge=1, description="Nova's [scheduler] max_attempts")
    quota_instances: int = Field(
        -1, ge=-1, description="instances a project may have (-1: unlimited, so load is not capped)"
    )

    transport_url: str = Field("memory://", description="messaging: memory:// or amqp://...")
    rpc_response_timeout: float = Field(60.0, gt=0, description="seconds an rpc.call waits")
    db_url: str = Field("", description="Nova's DB URL; default: SQLite file in the run directory")
    db_pool_size: int = Field(5, ge=1, description="DB connections per engine")

    token_ttl: int = Field(3600, ge=1, description="seconds a Keystone token is valid")
    token_cache: bool = Field(
        True,
        description="cache validated tokens in each service, like keystonemiddleware (token_cache_time); "
        "the boot's own validation steps (4-5, 21, 24, 27) still reach Keystone unless token_cache_steps",
    )
    token_cache_steps: bool = Field(
        False,
        description="serve the boot's validation steps from the token cache too (they then no longer "
        "reach Keystone; the seed's flow validates at each of them)",
    )
    token_cache_ttl: float = Field(300.0, ge=0, description="seconds a cached validation lasts")
    password_cache: bool = Field(
        True,
        description="Keystone remembers a keyed SHA-256 of a password it verified with bcrypt, so a "
        "user's later logins skip the bcrypt check (its cost belongs to the latency profile)",
    )
    compute_token_reuse: bool = Field(
        False,
        description="nova-compute reuses its service token instead of fetching one in steps "
        "20, 23 and 26 (the seed fetches one each time)",
    )
    accounts: list[Account] = Field(default_factory=_default_accounts)
    bottlenecks: list[str] = Field(
        default_factory=list,
        description="planted HotROD-style bottlenecks: db-pool, conductor-workers, token-validation "
        "(see harness.bottlenecks)",
    )
    instance_build_timeout: float = Field(
        300.0, ge=0, description="Nova's instance_build_timeout: a build still in BUILD this many "
        "seconds after it was accepted goes to ERROR and its resources are freed (0: never)",
    )
    periodic_interval: float = Field(
        5.0, gt=0, description="seconds between runs of the periodic tasks (build timeout, "
        "orphaned allocations, leftover VMs)",
    )

    run_dir: Path = Field(Path("runs/latest"), description="where spans and settings are written")
    otlp_file: bool = Field(True, description="write spans as OTLP JSON lines in the run dir")
    tracing: bool = Field(True, description="record spans at all (off: overhead measurements)")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get("HARNESS_CONFIG")
        if path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @field_validator("bind_host")
    @classmethod
    def _host_not_empty(cls, v: str) -> str:
        if not v:
            raise ValueError("bind_host must not be empty")
        return v

    @field_validator("bottlenecks")
    @classmethod
    def _known_bottlenecks(cls, v: list[str]) -> list[str]:
        from harness.bottlenecks import parse

        return [b.value for b in parse(v)]

    @field_validator("service_hosts")
    @classmethod
    def _known_services(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(Ports.model_fields))
        if unknown:
            raise ValueError(f"unknown service {', '.join(unknown)} (use {', '.join(Ports.model_fields)})")
        return v

    # -- derived values -------------------------------------------------------------------------
    @property
    def catalog_host(self) -> str:
        return self.public_host or self.bind_host

    def effective_host_groups(self) -> list[HostGroup]:
        """``hosts`` overrides the count of a single default group."""
        if self.hosts is None:
            return list(self.host_groups)
        base = self.host_groups[0] if self.host_groups else HostGroup()
        return [base.model_copy(update={"count": self.hosts})]

    def effective_db_url(self) -> str:
        return self.db_url or f"sqlite+aiosqlite:///{Path(self.run_dir).resolve() / 'nova.db'}"

    def endpoint(self, service: str) -> str:
        host = self.service_hosts.get(service) or self.catalog_host
        return f"http://{host}:{getattr(self.ports, service)}"

    def dump(self) -> dict[str, Any]:
        """Settings as JSON-able data with passwords masked (they never reach run output)."""
        data = json.loads(self.model_dump_json())
        for acct in data.get("accounts", []):
            acct["password"] = "***"
        return data


def free_ports(host: str = "127.0.0.1") -> Ports:
    """Five distinct free TCP ports on ``host`` (for clouds that must not collide with others)."""
    import socket

    socks, ports = [], []
    try:
        while len(ports) < 5:
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    k, n, g, ne, c = ports
    return Ports(keystone=k, nova=n, glance=g, neutron=ne, cinder=c)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from flags (``overrides``, ``None`` values ignored), env and a TOML file.

    The file comes from ``config_file`` or, failing that, ``HARNESS_CONFIG``.
    """
    flags = {k: v for k, v in overrides.items() if v is not None}
    if config_file is None:
        return Settings(**flags)
    path = Path(config_file)
    if not path.is_file():
        raise FileNotFoundError(f"settings file not found: {path}")

    class FileSettings(Settings):
        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings, **_: Any):
            return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=path)

    return FileSettings(**flags)
