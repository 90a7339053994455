"""``harness faults ...``: set, list and clear faults on a running cloud; the bottleneck demo.

``list``, ``set`` and ``clear`` talk to the cloud's admin API (``/v2.1/os-harness-faults`` on
nova-api) as an admin user found like OpenStack's clients find one: flags, else ``OS_AUTH_URL``,
``OS_USERNAME``, ``OS_PASSWORD``, ``OS_PROJECT_NAME``, else the embedded cloud's admin/admin.
``bottlenecks`` starts its own cloud with the planted bottlenecks, boots, and shows where each one
shows up in the trace; ``--fix NAME`` removes one, so the demo is: find it, flip it, measure again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.table import Table

from harness import aio
from harness.bottlenecks import CATALOG, Bottleneck, evidence, with_flags
from harness.cli import app
from harness.cli.common import ConfigOpt, PortOffsetOpt, SeedOpt, build_settings, console, fail, out
from harness.client import CloudError, OpenStackClient
from harness.faults import PRESETS, parse_specs, preset

faults_app = typer.Typer(help="Inject faults into a running cloud; the planted-bottleneck demo.",
                         no_args_is_help=True)
app.add_typer(faults_app, name="faults")

BottleneckOpt = typer.Option(None, "--bottleneck", help="Plant a HotROD-style bottleneck (repeat): "
                             + ", ".join(b.value for b in Bottleneck) + " or all.")
FixOpt = typer.Option(None, "--fix", help="Switch a planted bottleneck off (repeat; token-validation: "
                      "also turns the token cache on).")
AuthUrlOpt = typer.Option(None, "--auth-url", help="Keystone v3 URL (OS_AUTH_URL; default the local cloud).")
UserOpt = typer.Option(None, "--os-username", help="An admin user (OS_USERNAME; default admin).")
PasswordOpt = typer.Option(None, "--os-password", help="Its password (OS_PASSWORD; default admin).")
ProjectOpt = typer.Option(None, "--os-project-name", help="Its project (OS_PROJECT_NAME; default admin).")


def apply_bottleneck_flags(settings: Any, plant: Optional[List[str]], fix: Optional[List[str]]) -> Any:
    """``--bottleneck``/``--fix`` on top of the settings; an unknown name ends the command."""
    try:
        return with_flags(settings, plant=plant or (), fix=fix or ())
    except ValueError as exc:
        fail(str(exc))


def _client(auth_url: Optional[str], user: Optional[str], password: Optional[str],
            project: Optional[str]) -> OpenStackClient:
    return OpenStackClient(
        auth_url or os.environ.get("OS_AUTH_URL") or "http://127.0.0.1:5000/v3",
        username=user or os.environ.get("OS_USERNAME") or "admin",
        password=password or os.environ.get("OS_PASSWORD") or "admin",
        project=project or os.environ.get("OS_PROJECT_NAME") or "admin",
        timeout=30,
    )


async def _call(client: OpenStackClient, method: str, path: str, body: Any = None) -> Any:
    async with client:
        try:
            await client.authenticate()
        except CloudError as exc:
            raise CloudError(exc.status, f"Keystone refused the admin credentials: {exc.body}") from None
        resp = await client.request(method, "compute", path, **({"json": body} if body is not None else {}))
    if resp.status_code >= 400:
        try:
            err = next(iter(resp.json().values()))["message"]
        except (ValueError, StopIteration, KeyError, TypeError, AttributeError):
            err = resp.text
        raise CloudError(resp.status_code, err)
    return resp.json() if resp.content else None


def _run(coro: Any) -> Any:
    try:
        return aio.run(coro)
    except CloudError as exc:
        fail(f"the cloud answered {exc.status}: {exc.body}")
    except OSError as exc:
        fail(f"cannot reach the cloud: {exc}")


def _effects(f: dict[str, Any]) -> str:
    parts = []
    if f.get("down"):
        parts.append("DOWN")
    for key, label in (("error_rate", "error"), ("timeout_rate", "timeout"), ("lost_rate", "lost"),
                       ("revoke_rate", "revoke")):
        if f.get(key):
            extra = f" {f['status']}" if key == "error_rate" else (f" after {f['timeout_s']:g}s" if key == "timeout_rate" else "")
            parts.append(f"{label} {f[key]:.0%}{extra}")
    if f.get("latency_ms") is not None:
        lat = f["latency_ms"]
        parts.append(f"+{lat:g} ms" if isinstance(lat, (int, float)) else f"+{json.dumps(lat)} ms")
    return ", ".join(parts)


def print_faults(items: list[dict[str, Any]], bottlenecks: list[str]) -> None:
    table = Table(title="faults", show_edge=False)
    table.add_column("id", no_wrap=True)
    for col in ("service", "steps", "effects", "window", "active", "injected"):
        table.add_column(col)
    for f in items:
        window = f"from +{f['start_s']:g}s" + (f" for {f['duration_s']:g}s" if f.get("duration_s") else "")
        injected = ", ".join(f"{k} {v}" for k, v in sorted(f.get("injected", {}).items())) or "-"
        table.add_row(f["id"], f["service"], ",".join(map(str, f["steps"])) or "(every request)",
                      _effects(f), window, "yes" if f.get("active") else "no", injected)
    out.print(table if items else "no faults")
    out.print(f"planted bottlenecks: {', '.join(bottlenecks) or 'none'}")


@faults_app.command("list")
def list_(auth_url: Optional[str] = AuthUrlOpt, os_username: Optional[str] = UserOpt,
          os_password: Optional[str] = PasswordOpt, os_project_name: Optional[str] = ProjectOpt,
          as_json: bool = typer.Option(False, "--json", help="Print the API's JSON (for scripts).")) -> None:
    """List the faults of a running cloud, whether each is active and what it has injected."""
    body = _run(_call(_client(auth_url, os_username, os_password, os_project_name), "GET", "/os-harness-faults"))
    if as_json:
        print(json.dumps(body, indent=2))
        return
    print_faults(body["faults"], body.get("bottlenecks", []))


@faults_app.command("set")
def set_(
    service: str = typer.Option("*", "--service", "-s", help="Service it acts in (e.g. glance-api)."),
    step: Optional[List[int]] = typer.Option(None, "--step", help="A boot step it acts at (repeat); "
                                             "none: every request the service takes."),
    error_rate: float = typer.Option(0.0, "--error-rate", help="Probability of an error (0..1)."),
    status: int = typer.Option(500, "--status", help="HTTP status of an injected error (5xx)."),
    latency_ms: Optional[str] = typer.Option(None, "--latency-ms", help="Added latency: ms, or a JSON "
                                             "distribution like '{\"dist\": \"lognormal\", \"median\": 40, \"sigma\": 0.5}'."),
    timeout_rate: float = typer.Option(0.0, "--timeout-rate", help="Probability the step hangs then fails."),
    timeout_s: float = typer.Option(30.0, "--timeout-s", help="How long a hung step hangs."),
    lost_rate: float = typer.Option(0.0, "--lost-rate", help="Probability a message is lost (steps 8, 12, 14, 18)."),
    revoke_rate: float = typer.Option(0.0, "--revoke-rate", help="Probability the token is revoked as it is "
                                      "validated (steps 4, 21, 24, 27)."),
    down: bool = typer.Option(False, "--down", help="Take the service down (HTTP 503, RPC messages wait)."),
    start_s: float = typer.Option(0.0, "--start", help="Seconds from now until it starts."),
    duration_s: Optional[float] = typer.Option(None, "--for", help="Seconds it lasts (default: until cleared)."),
    fault_id: Optional[str] = typer.Option(None, "--id", help="Its name (same name: replaces)."),
    message: Optional[str] = typer.Option(None, "--message", help="Text of the injected error."),
    auth_url: Optional[str] = AuthUrlOpt, os_username: Optional[str] = UserOpt,
    os_password: Optional[str] = PasswordOpt, os_project_name: Optional[str] = ProjectOpt,
) -> None:
    """Set a fault on a running cloud (checked here first, so a bad value is named before any call)."""
    spec: dict[str, Any] = {"service": service, "steps": list(step or []), "error_rate": error_rate,
                            "status": status, "timeout_rate": timeout_rate, "timeout_s": timeout_s,
                            "lost_rate": lost_rate, "revoke_rate": revoke_rate, "down": down,
                            "start_s": start_s, "duration_s": duration_s, "message": message}
    if fault_id:
        spec["id"] = fault_id
    if latency_ms is not None:
        try:
            spec["latency_ms"] = json.loads(latency_ms)
        except ValueError:
            fail(f"--latency-ms {latency_ms!r}: give milliseconds or a JSON distribution table")
    try:
        checked = parse_specs([spec])[0]
    except ValueError as exc:
        fail(str(exc).removeprefix("fault 0: "))
    body = _run(_call(_client(auth_url, os_username, os_password, os_project_name), "POST",
                      "/os-harness-faults", {"fault": checked.public()}))
    print_faults([body["fault"]], [])


@faults_app.command("preset")
def preset_(
    name: Optional[str] = typer.Argument(None, help="The preset to set (none: list them)."),
    auth_url: Optional[str] = AuthUrlOpt, os_username: Optional[str] = UserOpt,
    os_password: Optional[str] = PasswordOpt, os_project_name: Optional[str] = ProjectOpt,
) -> None:
    """Set a ready-made OpenStack fault (slow Glance, lost build cast, token revoked mid-boot...)."""
    if name is None:
        table = Table(title="presets", show_edge=False)
        table.add_column("name")
        table.add_column("what it does")
        for key, (what, _) in PRESETS.items():
            table.add_row(key, what)
        out.print(table)
        return
    try:
        specs = preset(name)
    except ValueError as exc:
        fail(str(exc))

    async def post_all() -> list[dict[str, Any]]:
        return [(await _call(_client(auth_url, os_username, os_password, os_project_name), "POST",
                             "/os-harness-faults", {"fault": s.public()}))["fault"] for s in specs]

    print_faults(_run(post_all()), [])


@faults_app.command("clear")
def clear(
    fault_id: Optional[str] = typer.Argument(None, help="The fault to clear (default: all of them)."),
    auth_url: Optional[str] = AuthUrlOpt, os_username: Optional[str] = UserOpt,
    os_password: Optional[str] = PasswordOpt, os_project_name: Optional[str] = ProjectOpt,
) -> None:
    """Clear one fault, or all of them."""
    path = "/os-harness-faults" + (f"/{fault_id}" if fault_id else "")
    _run(_call(_client(auth_url, os_username, os_password, os_project_name), "DELETE", path))
    out.print(f"cleared {fault_id or 'every fault'}")


@faults_app.command("bottlenecks")
def bottlenecks_demo(
    fix: Optional[List[str]] = typer.Option(None, "--fix", help="Remove a planted bottleneck (repeat): "
                                            + ", ".join(b.value for b in Bottleneck) + " or all."),
    boots: int = typer.Option(120, "--boots", "-N", min=1, max=100000, help="Servers to boot."),
    concurrency: int = typer.Option(30, "--concurrency", "-C", min=1, max=10000, help="Boots in flight."),
    profile: str = typer.Option("bottlenecks", "--profile", "-p", help="Latency profile."),
    run_dir: Path = typer.Option(Path("runs/bottlenecks"), "--run-dir", help="Where the spans go."),
    config: Optional[Path] = ConfigOpt,
    seed: Optional[int] = SeedOpt,
    port_offset: Optional[int] = PortOffsetOpt,
) -> None:
    """HotROD-style demo: boot with the bottlenecks planted, show where each one is in the trace.

    Then flip one with --fix and measure again."""
    from harness.loadgen import BootOptions, fixed_count, run_load

    settings = build_settings(config=config, profile=profile, run_dir=run_dir, seed=seed,
                              port_offset=port_offset)
    try:
        settings = with_flags(settings.model_copy(update={"bottlenecks": []}),
                              plant=["all"], fix=list(fix or []))
    except ValueError as exc:
        fail(str(exc))

    async def shape(booter, tick):
        return await fixed_count(booter, count=boots, concurrency=concurrency, tick=tick)

    if (run_dir / "spans.jsonl").exists():
        (run_dir / "spans.jsonl").unlink()  # one run per directory: the evidence is this run's
    report = _run(run_load(settings, shape, opts=BootOptions(), progress_total=boots, progress=True))
    report.print(out)
    found = evidence(report.spans_path) if report.spans_path else {}
    table = Table(title="where the bottlenecks show in the trace", show_edge=False)
    for col in ("bottleneck", "planted", "waits", "mean wait ms", "max wait ms", "switch off with"):
        table.add_column(col)
    for b, info in CATALOG.items():
        e = found.get(b.value, {"count": 0, "mean_ms": 0.0, "max_ms": 0.0})
        table.add_row(b.value, "yes" if b.value in settings.bottlenecks else "[green]fixed[/]",
                      str(int(e["count"])), f"{e['mean_ms']:.1f}", f"{e['max_ms']:.1f}",
                      f"--fix {b.value}" if b.value in settings.bottlenecks else "-")
    out.print(table)
    for b, info in CATALOG.items():
        out.print(f"  {b.value}: {info.simulates}; look at {info.find_it}")
    console.print("spans: " + str(report.spans_path) + " (open them in Jaeger: see README)")
