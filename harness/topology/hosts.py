"""Which fake compute hosts one nova-compute process serves.

The settings define the cloud's hosts (``compute-1`` .. ``compute-N``); a process serves all of
them, the ones named, or one shard of them (``--shard 2/4``: every 4th host from the 2nd), so
``harness up --processes --compute-processes 4`` splits them without overlap. In containers
scaled with ``docker compose --scale``, the replicas cannot be told apart by their settings:
``--host-prefix hostname`` names each replica's hosts after its container (``<hostname>-1`` ...).
"""

from __future__ import annotations

import re
import socket
from typing import Sequence

from harness.config import Settings
from harness.services.nova_compute import host_names

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (1-based) -> ``(I, N)``; a clear ``ValueError`` otherwise."""
    m = _SHARD.match(text)
    if not m:
        raise ValueError(f"--shard {text!r}: expected I/N, e.g. 1/4")
    i, n = int(m.group(1)), int(m.group(2))
    if not 1 <= i <= n:
        raise ValueError(f"--shard {text!r}: I must be between 1 and N")
    return i, n


def with_host_prefix(settings: Settings, prefix: str) -> Settings:
    """Settings whose host groups are named ``<prefix>-<n>`` (``hostname``: this machine's name)."""
    if prefix == "hostname":
        prefix = socket.gethostname()
    if not prefix or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", prefix) or "#" in prefix:
        raise ValueError(f"--host-prefix {prefix!r}: use letters, digits, '-', '_' or '.'")
    groups = [g.model_copy(update={"prefix": prefix}) for g in settings.effective_host_groups()]
    return settings.model_copy(update={"host_groups": groups, "hosts": None})


def select_hosts(settings: Settings, names: Sequence[str] = (), shard: str | None = None) -> list[str]:
    """The host names one process serves (see the module docstring)."""
    every = [name for name, _ in host_names(settings.effective_host_groups())]
    if names:
        unknown = [n for n in names if n not in every]
        if unknown:
            first, last = (every[0], every[-1]) if every else ("none", "none")
            raise ValueError(f"unknown compute host {', '.join(unknown)} (the settings define "
                             f"{len(every)}: {first} .. {last})")
        chosen = [n for n in every if n in set(names)]
    else:
        chosen = every
    if shard:
        i, n = parse_shard(shard)
        chosen = chosen[i - 1::n]
    if not chosen:
        raise ValueError("this nova-compute would serve no host: give more hosts or fewer shards")
    return chosen
