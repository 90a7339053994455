"""Check the broker and Nova's DB before starting any process, so that an unreachable one is a
single clear message (which URL, what went wrong, how to start it) instead of eight crashed logs.
The DB check also creates the schema and seeds the flavors once, before the services race to."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from harness.config import Settings
from harness.db import NovaDB
from harness.messaging import make_transport

HINT = "scripts/start-services.sh starts RabbitMQ and PostgreSQL on 127.0.0.1"


class PreflightError(RuntimeError):
    """A real component is unreachable or unsuitable; the message says which and how to fix it."""


async def check_broker(settings: Settings) -> None:
    url = settings.transport_url
    if url.startswith("memory://"):
        raise PreflightError(
            "one process per service needs a message broker: the memory:// transport lives inside "
            "one process. Pass --transport amqp://user:pass@127.0.0.1:5672/ "
            f"(or HARNESS_TRANSPORT_URL); {HINT}"
        )
    try:
        transport = make_transport(url)
    except ValueError as exc:
        raise PreflightError(str(exc)) from None
    try:
        await transport.start()
    except ConnectionError as exc:
        raise PreflightError(f"{exc}") from None
    finally:
        await transport.close()


async def prepare_db(settings: Settings) -> str:
    """Reach Nova's DB, create its schema and seed the flavors; returns the URL, password hidden."""
    url = settings.effective_db_url()
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        db = NovaDB(url, pool_size=1)
    except (ValueError, SQLAlchemyError, ImportError) as exc:
        raise PreflightError(f"Nova's DB URL {shown!r} is not usable: {exc}") from None
    try:
        await db.create_schema()
        await db.seed([])
    except (OSError, SQLAlchemyError) as exc:
        reason = getattr(exc, "orig", None) or exc
        raise PreflightError(f"cannot use Nova's DB at {shown}: {reason}; {HINT}") from None
    finally:
        await db.close()
    return shown
