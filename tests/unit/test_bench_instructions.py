"""bench/bench_instructions.py: the instruction total it reads from a callgrind dump is the one
callgrind counted (a real dump of a small program, and more work counts more), and bad arguments
are a message, not a traceback."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "bench_instructions.py"
_spec = importlib.util.spec_from_file_location("bench_instructions", _PATH)
bench_instructions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_instructions)

needs_valgrind = pytest.mark.skipif(shutil.which("valgrind") is None,
                                    reason="valgrind not installed (.ci/run installs it)")


def _count(tmp_path: Path, loops: int) -> int:
    out = tmp_path / f"cg.{loops}.out"
    subprocess.run(["valgrind", "-q", "--tool=callgrind", f"--callgrind-out-file={out}",
                    sys.executable, "-S", "-c", f"sum(range({loops}))"], check=True, timeout=300)
    return bench_instructions._instructions(out)


@needs_valgrind
def test_the_total_is_callgrinds_and_grows_with_the_work(tmp_path):
    small, big = _count(tmp_path, 1_000), _count(tmp_path, 2_000_000)
    assert small > 1_000_000  # an interpreter's start-up alone is millions of instructions
    # two million more iterations of sum(range()) are at least ten instructions each
    assert big - small > 20_000_000


def test_a_dump_without_a_total_is_a_clear_error(tmp_path):
    dump = tmp_path / "cg.out"
    dump.write_text("version: 1\ncreator: callgrind-3.19.0\nevents: Ir\n")
    with pytest.raises(SystemExit, match="no instruction total"):
        bench_instructions._instructions(dump)


@pytest.mark.parametrize("args", [["--boots", "0"], ["--poll", "0"], ["--concurrency", "-1"]])
def test_bad_arguments_are_a_message(args):
    proc = subprocess.run([sys.executable, str(_PATH), *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "must be >= 1" in proc.stderr
