"""One line per boot, whatever the tracing: ``<run-dir>/locust-boots.jsonl``.

A boot's result (outcome, server, timing, trace id) used to be read back from its Locust span
only. With a sampler that drops traces (``OTEL_TRACES_SAMPLER=parentbased_traceidratio``), the
dropped boots then vanished from the results, the throughput and the SLAs: a 0.25 ratio reported
112 boots where Locust ran 467. So every Locust process also appends each finished boot here, one
JSON object a line, in one ``O_APPEND`` write (the lines of several workers never interleave), and
``harness bench`` reads its results from this file; the trace id says which trace, if any was
kept, tells the boot's steps.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

BOOTS_FILE_NAME = "locust-boots.jsonl"


class BootLog:
    """Appends one record a finished boot (not one the run interrupted)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / BOOTS_FILE_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, *, outcome: str, server_id: str | None, trace_id: int, start_ns: int,
              message: str | None = None, sampled: bool = True) -> None:
        record: dict[str, Any] = {
            "outcome": outcome, "server_id": server_id, "trace_id": f"{trace_id:032x}",
            "start_ns": start_ns, "end_ns": time.time_ns(), "sampled": sampled,
        }
        if message is not None:
            record["message"] = message
        os.write(self._fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_boot_log(path: Path) -> list[dict[str, Any]]:
    """The records of a boot log (a line cut short by a killed writer is skipped)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "outcome" in record:
            out.append(record)
    return out
