"""Planted bottlenecks, HotROD style: find one in a trace, switch it off, measure again.

Each is a realistic misconfiguration of an OpenStack control plane that only shows under load,
and each leaves a mark a trace reader can find:

``db-pool``
    Nova's DB connection pool of size one (``[database] max_pool_size``). Every SQL step's
    modeled time is spent holding one of its service's connections; with one connection the
    boots' DB steps (6, 7, 10, 11, 17) queue behind each other. In a trace: those spans grow
    under load, each carrying ``harness.db_pool.wait_ms`` and a ``db.pool.wait`` event.
``conductor-workers``
    A single nova-conductor worker (``[conductor] workers = 1``). In a trace: step 15
    (``receive conductor``) grows, its ``messaging.harness.queue_wait_ms`` holds the time.
``token-validation``
    Token validation without a cache (keystonemiddleware's ``memcached_servers`` unset) in front
    of a Keystone with one validation worker that costs :data:`KEYSTONE_VALIDATION_MS` per token.
    In a trace: Keystone's ``GET /v3/auth/tokens`` server spans (steps 4-5, 21, 24, 27) grow,
    each with a ``keystone.worker.wait`` event. The fix turns on the validators' token cache and
    lets nova-compute reuse its service token, so most validations never reach Keystone.

Plant them with ``harness up --bottleneck NAME`` (or ``bottlenecks = [...]`` in the settings) and
remove them with ``--fix NAME``; ``harness faults bottlenecks`` runs the whole demo.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Iterable


class Bottleneck(str, enum.Enum):
    DB_POOL = "db-pool"
    CONDUCTOR_WORKERS = "conductor-workers"
    TOKEN_VALIDATION = "token-validation"


@dataclass(frozen=True, slots=True)
class BottleneckInfo:
    name: Bottleneck
    simulates: str
    find_it: str
    fix: str


CATALOG: dict[Bottleneck, BottleneckInfo] = {b.name: b for b in (
    BottleneckInfo(Bottleneck.DB_POOL, "a Nova DB connection pool of size 1",
                   "DB step spans (6, 7, 10, 11, 17) with harness.db_pool.wait_ms and db.pool.wait events",
                   "--fix db-pool: the configured pool (db_pool_size)"),
    BottleneckInfo(Bottleneck.CONDUCTOR_WORKERS, "a single nova-conductor worker",
                   "step 15 'receive conductor' spans whose messaging.harness.queue_wait_ms grows",
                   "--fix conductor-workers: conductor_workers as configured (default 4)"),
    BottleneckInfo(Bottleneck.TOKEN_VALIDATION,
                   "uncached token validation against a single slow Keystone validation worker",
                   "Keystone GET /v3/auth/tokens spans with keystone.worker.wait events",
                   "--fix token-validation: every validation cached (boot steps too), "
                   "nova-compute reuses its service token"),
)}

#: What one token validation costs Keystone's single worker when the bottleneck is planted (ms).
KEYSTONE_VALIDATION_MS = 10.0


def parse(names: Iterable[str]) -> list[Bottleneck]:
    """Bottlenecks by name (``all`` is every one); ValueError names an unknown one."""
    out: list[Bottleneck] = []
    for name in names:
        if name == "all":
            out.extend(b for b in Bottleneck if b not in out)
            continue
        try:
            b = Bottleneck(name)
        except ValueError:
            raise ValueError(f"unknown bottleneck {name!r}: use {', '.join(b.value for b in Bottleneck)} "
                             "or all") from None
        if b not in out:
            out.append(b)
    return out


def plan(settings: Any, *, plant: Iterable[str] = (), fix: Iterable[str] = ()) -> dict[str, Any]:
    """Settings updates that plant ``plant`` and fix ``fix`` on top of ``settings.bottlenecks``."""
    planted = [b for b in parse(list(settings.bottlenecks) + list(plant)) if b not in parse(fix)]
    updates: dict[str, Any] = {"bottlenecks": [b.value for b in planted]}
    if Bottleneck.TOKEN_VALIDATION in parse(fix):
        updates.update(token_cache=True, token_cache_steps=True, compute_token_reuse=True)
    return updates


def effective(settings: Any) -> Any:
    """The settings a cloud runs with: those of each planted bottleneck override the rest."""
    planted = parse(settings.bottlenecks)
    if not planted:
        return settings
    updates: dict[str, Any] = {}
    if Bottleneck.DB_POOL in planted:
        updates["db_pool_size"] = 1
    if Bottleneck.CONDUCTOR_WORKERS in planted:
        updates["conductor_workers"] = 1
    if Bottleneck.TOKEN_VALIDATION in planted:
        updates.update(token_cache=False, token_cache_steps=False, compute_token_reuse=False)
    return settings.model_copy(update=updates)


def planted(settings: Any, which: Bottleneck) -> bool:
    return which.value in settings.bottlenecks


def with_flags(settings: Any, *, plant: Iterable[str] = (), fix: Iterable[str] = ()) -> Any:
    """``settings`` with ``--bottleneck`` and ``--fix`` flags applied (ValueError: unknown name)."""
    plant, fix = list(plant), list(fix)
    if not plant and not fix:
        return settings
    return settings.model_copy(update=plan(settings, plant=plant, fix=fix))


def evidence(spans_path: Any) -> dict[str, dict[str, float]]:
    """What a trace reader finds for each bottleneck in a run's spans file: the waits each one
    causes (ms: count, mean, max), read straight from the OTLP/JSON lines."""
    import json
    from pathlib import Path

    waits: dict[str, list[float]] = {b.value: [] for b in Bottleneck}

    def attrs(items: list[dict[str, Any]]) -> dict[str, Any]:
        out = {}
        for a in items or ():
            (kind, value), = a["value"].items() if a.get("value") else (("", None),)
            out[a["key"]] = float(value) if kind in ("doubleValue", "intValue") else value
        return out

    for line in Path(spans_path).read_text().splitlines():
        for rs in json.loads(line).get("resourceSpans", ()):
            for ss in rs.get("scopeSpans", ()):
                for span in ss.get("spans", ()):
                    a = attrs(span.get("attributes", []))
                    if "harness.db_pool.wait_ms" in a:
                        waits[Bottleneck.DB_POOL.value].append(a["harness.db_pool.wait_ms"])
                    if a.get("openstack.boot.step") == 15.0 and "messaging.harness.queue_wait_ms" in a:
                        waits[Bottleneck.CONDUCTOR_WORKERS.value].append(a["messaging.harness.queue_wait_ms"])
                    for ev in span.get("events", ()):
                        if ev.get("name") == "keystone.worker.wait":
                            waits[Bottleneck.TOKEN_VALIDATION.value].append(
                                attrs(ev.get("attributes", [])).get("wait_ms", 0.0))
    return {name: {"count": float(len(v)), "mean_ms": sum(v) / len(v) if v else 0.0,
                   "max_ms": max(v, default=0.0)} for name, v in waits.items()}
