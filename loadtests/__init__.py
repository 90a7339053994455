"""Locust load tests of the boot path: a user that boots servers the way an OpenStack client does.

``locustfile.py`` is the file to hand to Locust; the pieces live beside it, each small:

* :mod:`loadtests.load_options` — the command-line options (Locust's ``init_command_line_parser``
  hook, so they show in the web UI) and the typed :class:`~loadtests.load_options.LoadOptions`.
* :mod:`loadtests.keystone_session` — Keystone auth, the token's catalog, image/flavor lookup.
* :mod:`loadtests.boot_user` — the Locust user: authenticate, boot, poll, delete, traced.
* :mod:`loadtests.arrivals` — Poisson arrival times for the open-loop shape.
* :mod:`loadtests.shapes` — the load shapes: closed, open, step, spike (the user counts over time
  are :mod:`loadtests.load_plan`, importable without Locust).
* :mod:`loadtests.hooks` — Locust's event hooks: options, tracing, a run per start, its record.
* :mod:`loadtests.locust_tracing` — the ``locust`` tracer provider (built on Locust's ``--otel``).
* :mod:`loadtests.load_run` — the run's id and settings (on every span), and its record in
  ``<run-dir>/locust-runs.jsonl``.

Nothing here starts the cloud: Locust runs on gevent, the cloud on asyncio, so they are always
separate processes (``harness up`` in one terminal, ``locust`` in another).
"""
