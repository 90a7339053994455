"""One process per service: the real-components topology.

* :mod:`.service` runs one service (``harness serve SERVICE``): a partial
  :class:`~harness.cloud.EmbeddedCloud` that reaches the others over HTTP and the broker.
* :mod:`.supervisor` starts every service as a supervised child process on loopback
  (``harness up --processes``) with RabbitMQ and PostgreSQL, one log per service, and stops them so
  that each flushes its spans into the run's ``spans.jsonl``.
* :mod:`.preflight` checks the broker and the DB first, so an unreachable one is one clear line.
"""

from harness.topology.hosts import select_hosts

__all__ = ["select_hosts"]
