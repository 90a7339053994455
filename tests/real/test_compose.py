"""docker-compose.yml is checked without Docker: valid compose YAML, every harness container runs
a command the CLI accepts, and its ports, URLs and env vars agree with the settings and with the
containers they name. Where a compose client exists, ``docker compose config -q`` must pass."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import click
import pytest
import yaml
from typer.main import get_command

from harness.cli import _register, app
from harness.cloud import SERVICE_NAMES
from harness.config import Ports, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
TOP_LEVEL = {"services", "volumes", "networks", "configs", "secrets", "name", "version"}
SERVICE_KEYS = {"image", "build", "command", "entrypoint", "environment", "ports", "volumes",
                "depends_on", "healthcheck", "restart", "expose", "deploy", "working_dir", "user"}
#: which harness service answers which port of the settings
PORT_OF = {"keystone": "keystone", "nova-api": "nova", "glance-api": "glance",
           "neutron-server": "neutron", "cinder-api": "cinder"}


@pytest.fixture(scope="module")
def compose() -> dict:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def cli() -> click.Group:
    _register()
    return get_command(app)  # type: ignore[return-value]


def _harness(compose: dict) -> dict[str, dict]:
    """Containers that run ``harness serve SERVICE``, by the service they serve."""
    out = {}
    for name, svc in compose["services"].items():
        cmd = svc.get("command") or []
        if cmd[:2] == ["harness", "serve"]:
            out[cmd[2]] = {"container": name, **svc}
    return out


def _published(svc: dict) -> set[int]:
    """Container ports a service publishes (``host:container`` or ``ip:host:container``)."""
    return {int(str(p).split(":")[-1].split("/")[0]) for p in svc.get("ports", [])}


def test_compose_keys(compose):
    extra = {k for k in compose if not k.startswith("x-")} - TOP_LEVEL
    assert not extra, f"not compose keys: {extra}"
    for name, svc in compose["services"].items():
        unknown = {k for k in svc if not k.startswith("x-")} - SERVICE_KEYS
        assert not unknown, f"{name}: unknown keys {unknown}"
        assert "image" in svc or "build" in svc, name
    for vol in compose.get("volumes", {}):
        assert any(f"{vol}:" in str(v) for s in compose["services"].values() for v in s.get("volumes", []))


def test_every_service_runs_a_valid_cli_command(compose, cli):
    serving = _harness(compose)
    assert sorted(serving) == sorted(SERVICE_NAMES), "one container per service"
    serve = cli.commands["serve"]
    for service, svc in serving.items():
        ctx = serve.make_context("serve", list(svc["command"][2:]))  # raises on a bad option
        assert ctx.params["service"] == service
        assert ctx.params["ready_file"] is not None, f"{service}: its healthcheck needs the ready file"
        assert svc["healthcheck"]["test"][-1] == str(ctx.params["ready_file"])
    compute = serving["nova-compute"]
    assert "container_name" not in compute and not compute.get("ports"), "--scale needs no fixed names or ports"
    params = serve.make_context("serve", list(compute["command"][2:])).params
    assert params["host_prefix"] == "hostname", "scaled replicas need host names of their own"


def test_ports_urls_and_env_agree_with_the_settings(compose, monkeypatch):
    services = compose["services"]
    serving = _harness(compose)
    env = {k: str(v) for k, v in serving["nova-api"]["environment"].items()}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # the containers' settings validate (unknown HARNESS_* would fail)
    assert settings.bind_host == "0.0.0.0"
    # every HTTP service: the catalog names its container, which publishes the settings' port
    defaults = Ports()
    for service, port_name in PORT_OF.items():
        container = serving[service]["container"]
        url = urlsplit(settings.endpoint(port_name))
        assert url.hostname == container, (service, url)
        assert url.port == getattr(defaults, port_name) == getattr(settings.ports, port_name)
        assert url.port in _published(services[container]), f"{container} must publish {url.port}"
    # the broker and DB URLs name the containers and their credentials
    amqp = urlsplit(settings.transport_url)
    rabbit = services[amqp.hostname]["environment"]
    assert (amqp.username, amqp.password) == (rabbit["RABBITMQ_DEFAULT_USER"], rabbit["RABBITMQ_DEFAULT_PASS"])
    assert (amqp.port or 5672) == 5672
    db = urlsplit(settings.db_url.replace("+asyncpg", ""))
    pg = services[db.hostname]["environment"]
    assert (db.username, db.password, db.path.lstrip("/")) == (
        pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])
    # OTLP to Jaeger with the protocol its port speaks
    otlp = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert otlp.hostname == "jaeger" and otlp.hostname in services
    assert {4317: "grpc", 4318: "http/protobuf"}[otlp.port] == env["OTEL_EXPORTER_OTLP_PROTOCOL"]
    assert {4317, 4318, 16686} <= _published(services["jaeger"])
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")  # v2 all-in-one
    assert 15672 in _published(services["rabbitmq"]) and "management" in services["rabbitmq"]["image"]
    # every harness container (services and Locust) shares the same settings and run volume
    for name, svc in services.items():
        if svc.get("image", "").startswith("openstack-boot-harness"):
            for key in ("HARNESS_TRANSPORT_URL", "HARNESS_DB_URL", "HARNESS_RUN_DIR", "OTEL_EXPORTER_OTLP_ENDPOINT"):
                assert svc["environment"][key] == env[key], (name, key)
            assert any(str(v).endswith(":/runs") for v in svc["volumes"]), name


def test_start_order_and_healthchecks(compose):
    services = compose["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                hc = services[dep].get("healthcheck", {})
                assert hc.get("test") and not hc.get("disable"), f"{dep} has no healthcheck for {name}"
    serving = _harness(compose)
    for service, svc in serving.items():
        deps = svc["depends_on"]
        assert deps["rabbitmq"]["condition"] == deps["postgres"]["condition"] == "service_healthy"
        if service != "keystone":
            assert deps["keystone"]["condition"] == "service_healthy", service
    assert serving["nova-compute"]["depends_on"]["nova-conductor"]["condition"] == "service_healthy"


def test_locust_master_and_workers(compose, cli):
    services = compose["services"]
    master, worker = services["locust-master"], services["locust-worker"]
    for svc in (master, worker):
        cmd = svc["command"]
        assert cmd[0] == "locust"
        locustfile = cmd[cmd.index("-f") + 1]
        assert (ROOT / locustfile.removeprefix("/app/")).is_file(), locustfile
    mc = master["command"]
    assert "--master" in mc and 8089 in _published(master)
    assert int(mc[mc.index("--web-port") + 1]) == 8089
    keystone = urlsplit(mc[mc.index("--host") + 1])
    assert keystone.hostname == "keystone" and keystone.port == Ports().keystone and keystone.path == "/v3"
    wc = worker["command"]
    assert "--worker" in wc and wc[wc.index("--master-host") + 1] == "locust-master"
    assert "container_name" not in worker, "--scale locust-worker=N needs no fixed name"


def _compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config(tmp_path):
    client = _compose_client()
    if client is None:
        pytest.skip("no docker compose client here (docker compose plugin or docker-compose)")
    res = subprocess.run([*client, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
