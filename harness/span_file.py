"""The run's spans file: one ``ExportTraceServiceRequest`` of OTLP/JSON per line.

Written by the span export process (:mod:`harness.span_export`), which gets the cloud's ended
spans as records (:func:`harness.otlp_json.capture`) and writes each batch it receives as one line
(:class:`SpanFile`), grouped by resource and scope as the SDK's encoder groups a batch. Several
processes append to one file (``harness up --processes``, Locust's workers): :class:`LineFile`
opens it with ``O_APPEND`` and writes each line with one unbuffered ``write``, so lines never
interleave.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from pathlib import Path
from typing import Sequence

from harness.otlp_json import RecordGroups

log = logging.getLogger(__name__)


class LineFile:
    """Appends whole lines to a file that other processes may append to as well."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("ab", buffering=0)
        self._lock = threading.Lock()

    def write_line(self, line: bytes) -> bool:
        """Append ``line`` (which ends with its newline); False if the file is closed already."""
        with self._lock:
            if self._fh.closed:
                return False
            view = memoryview(line)
            while view:  # a regular file takes it in one write; loop only if it ever does not
                view = view[self._fh.write(view):]
        return True

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.close()


class SpanFile:
    """Records -> lines of the spans file; says how many spans of each group it wrote."""

    def __init__(self, path: Path, groups: RecordGroups) -> None:
        self.file = LineFile(path)
        self.groups = groups

    def write(self, records: Sequence[tuple]) -> Counter:
        """Write ``records`` as one line; their count per group, or nothing if the write failed
        (a full disk: those spans are lost and the counters say so, ``ended - exported``)."""
        if not records:
            return Counter()
        try:
            ok = self.file.write_line(self.groups.encode(records, b"\n"))
        except Exception:
            log.exception("writing %d spans to %s failed", len(records), self.file.path)
            return Counter()
        return Counter(r[0] for r in records) if ok else Counter()

    def close(self) -> None:
        self.file.close()
