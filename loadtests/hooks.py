"""Locust event hooks: options in, tracing up, a run per swarm start, its record out.

Every Locust process (the only one, a master, or a worker) keeps one :class:`LoadContext` on its
``Environment``. Masters run no users, so they make no spans; they give each run its id (sent to
the workers with the spawn message) and write the run's record with the combined statistics.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import gevent
from locust.env import Environment
from locust.runners import WORKER_REPORT_INTERVAL, MasterRunner, WorkerRunner

from loadtests.boot_log import BootLog
from loadtests.keystone_session import auth_url_of
from loadtests.load_options import LoadOptions, add_arguments
from loadtests.load_run import RUN_ID_ATTR, CloudInfo, LoadRun
from loadtests.locust_tracing import LocustTracing
from loadtests.load_plan import USERS_TOTAL_ATTR

log = logging.getLogger(__name__)
_ATTR = "harness_load_context"


class LoadContext:
    """This process's tracing and current run."""

    def __init__(self, environment: Environment, options: LoadOptions) -> None:
        self.environment = environment
        self.is_master = isinstance(environment.runner, MasterRunner)
        self.is_worker = isinstance(environment.runner, WorkerRunner)
        self.tracing: LocustTracing | None = None
        if not self.is_master:
            role = "worker" if self.is_worker else "local"
            self.tracing = LocustTracing.setup(
                spans_file=options.spans_file,
                locust_otel=bool(getattr(environment.parsed_options, "otel", False)),
                process_role=role)
        self.run: LoadRun | None = None
        self.boot_log: BootLog | None = None  # this process's boots, one line each (not the master)
        self._pending_record: tuple[LoadRun, gevent.Greenlet] | None = None

    @property
    def worker_index(self) -> int:
        runner = self.environment.runner
        return max(0, int(getattr(runner, "worker_index", 0) or 0))

    def users_total(self) -> int:
        """All users of the run (over every worker): what the shape asked for last."""
        parsed = self.environment.parsed_options
        total = getattr(parsed, USERS_TOTAL_ATTR, None) or getattr(parsed, "num_users", None)
        return int(total or 1)

    def start_run(self) -> None:
        env, parsed = self.environment, self.environment.parsed_options
        options = LoadOptions.from_parsed(parsed)
        run_id = getattr(parsed, RUN_ID_ATTR, None) if self.is_worker else None
        if not run_id:
            run_id = LoadRun.new_id()
            setattr(parsed, RUN_ID_ATTR, run_id)  # travels to the workers with the spawn message
        host = env.host or ""
        cloud = CloudInfo.read(options.run_dir, auth_url_of(host)) if host else None
        self.run = LoadRun(run_id=run_id, options=options, host=host, cloud=cloud)
        if not self.is_master and self.boot_log is None:
            self.boot_log = BootLog(options.run_dir)
        log.info("run %s: shape %s, users %d, spans %s", run_id, options.load_shape, self.users_total(),
                 self.tracing.spans_path if self.tracing else "(master: none)")

    def stop_run(self) -> None:
        if self.tracing is not None:
            self.tracing.flush()
        if self.run is None or self.is_worker:
            return
        run, self.run = self.run, None
        if not self.is_master:
            self._write_record(run)
            return
        # A master hears of its workers' last boots only with their next report (every few
        # seconds), or at once when it quits: record after the next report, or at quitting.
        self._pending_record = (run, gevent.spawn_later(WORKER_REPORT_INTERVAL + 1.0, self._write_record, run))

    def _write_record(self, run: LoadRun) -> None:
        env = self.environment
        counts = self.tracing.counters() if self.tracing else None
        record = run.record(stats=env.runner.stats, parsed=env.parsed_options,
                            users_total=self.users_total(), span_counts=counts)
        path = run.write_record(record)
        log.info("run %s recorded in %s", run.run_id, path)

    def quit(self) -> None:
        if self.boot_log is not None:
            self.boot_log.close()
            self.boot_log = None
        if self._pending_record is not None:
            run, later = self._pending_record
            if not later.ready():  # Locust is quitting: the workers' final reports are in
                later.kill()
                self._write_record(run)
            self._pending_record = None
        if self.tracing is not None:
            counts = self.tracing.shutdown()
            dropped = sum(c.get("dropped", 0) for c in counts.values())
            if dropped:
                log.error("%d Locust spans were dropped: %s", dropped, counts)
            self.tracing = None


def context_of(environment: Environment) -> LoadContext:
    ctx = getattr(environment, _ATTR, None)
    if ctx is None:
        raise RuntimeError("the load test hooks are not registered: run Locust with -f loadtests/locustfile.py")
    return ctx


def _on_parser(parser: Any, **_: Any) -> None:
    add_arguments(parser)


def _on_init(environment: Environment, **_: Any) -> None:
    if environment.parsed_options is None:
        raise RuntimeError("loadtests needs Locust's parsed options (run it with the locust command)")
    try:
        options = LoadOptions.from_parsed(environment.parsed_options)
        if environment.host:
            auth_url_of(environment.host)
    except ValueError as exc:
        sys.stderr.write(f"locust: error: {exc}\n")
        sys.exit(2)
    setattr(environment, _ATTR, LoadContext(environment, options))


def _on_test_start(environment: Environment, **_: Any) -> None:
    try:
        context_of(environment).start_run()
    except ValueError as exc:  # a bad value typed into the web UI
        log.error("cannot start: %s", exc)
        gevent.spawn(environment.runner.stop)


def _on_test_stop(environment: Environment, **_: Any) -> None:
    context_of(environment).stop_run()


def _on_quitting(environment: Environment, **_: Any) -> None:
    ctx = getattr(environment, _ATTR, None)
    if ctx is not None:
        ctx.quit()


def register(events: Any) -> None:
    """Add the hooks to Locust's events (the locustfile calls this once)."""
    events.init_command_line_parser.add_listener(_on_parser)
    events.init.add_listener(_on_init)
    events.test_start.add_listener(_on_test_start)
    events.test_stop.add_listener(_on_test_stop)
    events.quitting.add_listener(_on_quitting)
