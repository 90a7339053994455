"""loadtests.boot_log: one whole JSON line a boot from any number of processes, read back with a
line cut short by a killed writer skipped; harness bench's results come from it."""

from __future__ import annotations

import json
import math
import multiprocessing

from harness.experiment.locust_driver import results_from_boot_log
from loadtests.boot_log import BOOTS_FILE_NAME, BootLog, read_boot_log


def _writer(run_dir, worker: int) -> None:
    log = BootLog(run_dir)
    for i in range(200):
        log.write(outcome="active", server_id=f"w{worker}-{i}", trace_id=(worker << 64) | i,
                  start_ns=1_000_000_000 * i, message=None, sampled=bool(i % 2))
    log.close()


def test_lines_from_several_processes_never_interleave(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(tmp_path, w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = (tmp_path / BOOTS_FILE_NAME).read_text().splitlines()
    assert len(lines) == 600
    records = [json.loads(line) for line in lines]  # each one whole
    assert {r["server_id"] for r in records} == {f"w{w}-{i}" for w in range(3) for i in range(200)}
    assert all(len(r["trace_id"]) == 32 for r in records)


def test_results_come_from_the_log_and_a_cut_line_is_skipped(tmp_path):
    log = BootLog(tmp_path)
    log.write(outcome="active", server_id="a", trace_id=1, start_ns=10**18, sampled=False)
    log.write(outcome="failed", server_id=None, trace_id=2, start_ns=10**18, message="No valid host was found.")
    log.close()
    with (tmp_path / BOOTS_FILE_NAME).open("a") as fh:
        fh.write('{"outcome": "active", "server_id": "cut sh')  # a writer killed mid-line
    assert len(read_boot_log(tmp_path / BOOTS_FILE_NAME)) == 2
    ok, failed = results_from_boot_log(tmp_path / BOOTS_FILE_NAME)
    assert ok.status == "ACTIVE" and ok.server_id == "a" and ok.active_s > 0
    assert ok.trace_id == f"{1:032x}" and math.isnan(ok.accepted_s)
    assert failed.status == "ERROR" and failed.fault == "No valid host was found." and failed.active_s is None
