"""Fixtures for the tests on real components: RabbitMQ and PostgreSQL.

Where they are found: ``HARNESS_TEST_AMQP_URL`` and ``HARNESS_TEST_PG_URL``, by default the ones
``scripts/start-services.sh`` sets up on 127.0.0.1. When one is unreachable the test is skipped
with the reason, unless ``CI`` is set: in CI the real path must be proven, so the test fails.

Each test gets a broker virtual host and a database of its own (created here, dropped after), so
durable queues and rows left by an earlier run never leak into it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from typing import AsyncIterator, Iterator
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

AMQP_URL = os.environ.get("HARNESS_TEST_AMQP_URL", "amqp://harness:harness@127.0.0.1:5672/")
PG_URL = os.environ.get(
    "HARNESS_TEST_PG_URL", "postgresql+asyncpg://harness:harness@127.0.0.1:5432/harness"
)
HOW = "start them with scripts/start-services.sh (as root)"


def unavailable(what: str, reason: str) -> None:
    """Skip (laptop without the services) or fail (CI, where they must be there)."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required when CI is set, but unavailable: {reason}", pytrace=False)
    pytest.skip(f"{what} unavailable ({reason}); {HOW}; with CI=true this fails instead")


async def _broker_reason(url: str) -> str | None:
    import aio_pika

    try:
        conn = await aio_pika.connect(url, timeout=5)
    except Exception as exc:  # any failure to connect is "unavailable", with its reason
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


def _pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _pg_reason(url: str) -> str | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(_pg_dsn(url), timeout=5)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


@pytest.fixture(scope="session")
def broker_url() -> str:
    reason = asyncio.run(_broker_reason(AMQP_URL))
    if reason:
        unavailable(f"RabbitMQ at {urlsplit(AMQP_URL).hostname}:{urlsplit(AMQP_URL).port or 5672}", reason)
    return AMQP_URL


@pytest.fixture(scope="session")
def pg_url() -> str:
    reason = asyncio.run(_pg_reason(PG_URL))
    if reason:
        unavailable(f"PostgreSQL at {urlsplit(_pg_dsn(PG_URL)).hostname}", reason)
    return PG_URL


def _rabbitmqctl(*args: str) -> bool:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        return False
    return subprocess.run([exe, "-q", *args], capture_output=True, timeout=60).returncode == 0


@pytest.fixture
def amqp_url(broker_url: str) -> Iterator[str]:
    """The broker URL with a fresh virtual host (when rabbitmqctl can make one here)."""
    parts = urlsplit(broker_url)
    vhost = f"harness-test-{uuid.uuid4().hex[:8]}"
    user = parts.username or "guest"
    if not (_rabbitmqctl("add_vhost", vhost) and _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")):
        yield broker_url  # a remote broker: share its default vhost
        return
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), parts.query, ""))
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
async def db_url(pg_url: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this test (dropped after it)."""
    import asyncpg

    name = f"harness_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(_pg_dsn(pg_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(pg_url)
    yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    admin = await asyncpg.connect(_pg_dsn(pg_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
