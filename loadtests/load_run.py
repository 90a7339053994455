"""One test run's identity and settings, and its record in the run directory.

A *run* is one start of the swarm (a web UI session can hold several). Its settings travel three
ways, so the analysis can group results by them:

* on every Locust span, as attributes (:meth:`LoadRun.span_attributes`): the run id, the shape,
  the users, the arrival rate, and the cloud's scheduler, profile and host count;
* in ``<run-dir>/locust-runs.jsonl``, one JSON object a run, written when the run stops by the
  master (or the only process): the settings and Locust's statistics per request name;
* Locust's own ``--csv`` / ``--html`` results, which the command line names.

The cloud's settings come from the ``settings.json`` that ``harness up`` writes into the same run
directory, used only when its Keystone port is the one ``--host`` points at (a real cloud, or a
stale run directory, contributes nothing rather than something wrong).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loadtests.load_options import LoadOptions

log = logging.getLogger(__name__)
RUNS_FILE_NAME = "locust-runs.jsonl"
#: Attribute of Locust's parsed options with the run id, set on the master when a run starts and
#: sent to the workers with the spawn message, so every process tags its spans with the same id.
RUN_ID_ATTR = "harness_load_run_id"


@dataclass(frozen=True, slots=True)
class CloudInfo:
    """What the analysis groups by, from the cloud's ``settings.json``."""

    run_id: str
    scheduler: str
    profile: str
    hosts: int

    @classmethod
    def read(cls, run_dir: Path, auth_url: str) -> "CloudInfo | None":
        path = Path(run_dir) / "settings.json"
        try:
            data = json.loads(path.read_text())
            s = data["settings"]
            port = int(s["ports"]["keystone"])
            hosts = s.get("hosts") or sum(int(g.get("count", 0)) for g in s.get("host_groups", []))
            info = cls(run_id=str(data["run_id"]), scheduler=str(s["scheduler"]),
                       profile=str(s["profile"]), hosts=int(hosts))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("cannot read the cloud's settings from %s: %s", path, exc)
            return None
        if urlsplit(auth_url).port != port:
            log.warning("%s is of a cloud on port %d, not of --host %s: its settings are not recorded",
                        path, port, auth_url)
            return None
        return info


@dataclass
class LoadRun:
    """The current run of this process (every process of a distributed run has one, same id)."""

    run_id: str
    options: LoadOptions
    host: str
    cloud: CloudInfo | None
    started_at: float = field(default_factory=time.time)

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:12]

    def span_attributes(self, users_total: int) -> dict[str, Any]:
        o = self.options
        attrs: dict[str, Any] = {
            "harness.load.run.id": self.run_id,
            "harness.load.shape": o.load_shape,
            "harness.load.users": users_total,
            "harness.load.token_per_boot": o.token_per_boot,
            "harness.load.poll_interval_s": o.poll_interval,
        }
        if o.load_shape == "open":
            attrs["harness.load.arrival_rate"] = o.arrival_rate
        if self.cloud is not None:
            # the names the cloud's own spans carry as resource attributes, so both group alike
            attrs.update({"harness.run.id": self.cloud.run_id, "harness.scheduler": self.cloud.scheduler,
                          "harness.profile": self.cloud.profile, "harness.hosts": self.cloud.hosts})
        return attrs

    def record(self, *, stats: Any, parsed: Any, users_total: int,
               span_counts: dict[str, dict[str, int]] | None = None) -> dict[str, Any]:
        """The run's settings and results, as written to ``locust-runs.jsonl``."""
        entries = []
        for entry in sorted(stats.entries.values(), key=lambda e: (e.method or "", e.name)):
            entries.append(_entry(entry))
        return {
            "run_id": self.run_id,
            "cloud_run_id": self.cloud.run_id if self.cloud else None,
            "started_at": self.started_at,
            "stopped_at": time.time(),
            "host": self.host,
            "users": users_total,
            "spawn_rate": getattr(parsed, "spawn_rate", None),
            "run_time": getattr(parsed, "run_time", None),
            "options": self.options.public(),
            "cloud": None if self.cloud is None else {
                "run_id": self.cloud.run_id, "scheduler": self.cloud.scheduler,
                "profile": self.cloud.profile, "hosts": self.cloud.hosts},
            "stats": entries,
            "total": _entry(stats.total),
            "errors": [{"method": e.method, "name": e.name, "error": str(e.error), "occurrences": e.occurrences}
                       for e in stats.errors.values()],
            "span_counts": span_counts or {},
        }

    def write_record(self, record: dict[str, Any]) -> Path:
        path = self.options.run_dir / RUNS_FILE_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        return path


def _entry(e: Any) -> dict[str, Any]:
    return {
        "method": e.method, "name": e.name, "requests": e.num_requests, "failures": e.num_failures,
        "avg_ms": e.avg_response_time, "min_ms": e.min_response_time, "max_ms": e.max_response_time,
        "p50_ms": e.get_response_time_percentile(0.5), "p95_ms": e.get_response_time_percentile(0.95),
        "p99_ms": e.get_response_time_percentile(0.99), "rps": e.total_rps,
    }
