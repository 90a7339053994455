"""The load test's own command-line options, and the typed settings read from them.

Locust's ``init_command_line_parser`` event hands us its parser; every option added there is also a
field of the web UI's start form (and is sent to workers in distributed runs), so the shape, the
arrival rate or the poll interval can be changed between runs from the browser. Each option can be
set by an environment variable too (``LOCUST_LOAD_SHAPE=open``; the ``OS_*`` variables of the
OpenStack clients for the credentials; ``HARNESS_RUN_DIR`` as for ``harness up``).

Values typed into the web UI skip argparse, so :meth:`LoadOptions.from_parsed` checks them again and
names the bad one.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

SHAPES = ("closed", "open", "step", "spike")
DEFAULT_AUTH_URL = "http://127.0.0.1:5000/v3"
DEFAULT_RUN_DIR = "runs/latest"
SPANS_FILE_NAME = "spans.jsonl"  # the cloud's own file: one file holds whole traces
#: A value of ``--locust-spans`` that turns the spans file off (OTLP export via ``--otel`` stays).
SPANS_OFF = "off"


def _number(kind: type, *, minimum: float, inclusive: bool) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"not a {kind.__name__}: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if value < minimum or (value == minimum and not inclusive):
            op = ">=" if inclusive else ">"
            raise argparse.ArgumentTypeError(f"must be {op} {minimum:g}, got {text!r}")
        return value

    parse.__name__ = f"{kind.__name__}"
    return parse


any_int = _number(int, minimum=float("-inf"), inclusive=True)
positive_float = _number(float, minimum=0.0, inclusive=False)
non_negative_float = _number(float, minimum=0.0, inclusive=True)
positive_int = _number(int, minimum=1, inclusive=True)
non_negative_int = _number(int, minimum=0, inclusive=True)


def add_arguments(parser: Any) -> None:
    """Register the options on Locust's parser (called from ``init_command_line_parser``)."""
    g = parser  # not an argument group: only Locust's parser knows is_secret and the web UI flags
    g.add_argument("--run-dir", default=DEFAULT_RUN_DIR, env_var="HARNESS_RUN_DIR",
                   help="The cloud's run directory (as given to `harness up`): its settings.json is read, "
                        f"the Locust spans are appended to its {SPANS_FILE_NAME} and each run's "
                        "settings and statistics to locust-runs.jsonl.")
    g.add_argument("--locust-spans", default="", env_var="LOCUST_SPANS_FILE",
                   help=f"Where the Locust user's spans go as OTLP JSON lines (default: <run-dir>/"
                        f"{SPANS_FILE_NAME}; '{SPANS_OFF}': nowhere but the --otel exporter).")
    g.add_argument("--os-username", default="demo", env_var="OS_USERNAME", help="Keystone user name.")
    g.add_argument("--os-password", default="demo", env_var="OS_PASSWORD", is_secret=True,
                   help="Keystone password.")
    g.add_argument("--os-project-name", default="demo", env_var="OS_PROJECT_NAME",
                   help="Project the token is scoped to.")
    g.add_argument("--os-domain", default="default", env_var="OS_USER_DOMAIN_ID",
                   help="Domain id of the user and the project.")
    g.add_argument("--os-interface", default="public", env_var="OS_INTERFACE",
                   choices=["public", "internal", "admin"], help="Catalog interface to use.")
    g.add_argument("--os-region", default="", env_var="OS_REGION_NAME",
                   help="Catalog region (empty: the first endpoint of each service).")
    g.add_argument("--flavor", default="1", env_var="LOCUST_FLAVOR", help="Flavor id or name to boot.")
    g.add_argument("--image", default="cirros", env_var="LOCUST_IMAGE",
                   help="Image id, name, or part of a name (default: the first image whose name "
                        "contains 'cirros', found with GET /v2/images).")
    g.add_argument("--poll-interval", type=positive_float, default=0.2, env_var="LOCUST_POLL_INTERVAL",
                   help="Seconds between GET /servers/{id} polls while a server builds or is deleted.")
    g.add_argument("--boot-timeout", type=positive_float, default=300.0, env_var="LOCUST_BOOT_TIMEOUT",
                   help="Seconds a server may take to become ACTIVE (or to go away) before it counts "
                        "as failed.")
    g.add_argument("--token-per-boot", action="store_true", default=False, env_var="LOCUST_TOKEN_PER_BOOT",
                   help="Authenticate for every boot (steps 1-2 in every trace); default: reuse the "
                        "token until it is near expiry.")
    g.add_argument("--think-time", type=non_negative_float, default=0.0, env_var="LOCUST_THINK_TIME",
                   help="Seconds a closed-loop user waits between boots.")
    g.add_argument("--load-shape", default="closed", choices=list(SHAPES), env_var="LOCUST_LOAD_SHAPE",
                   help="closed: -u users boot back to back (Locust's default); open: boots arrive as a "
                        "Poisson process at --arrival-rate from -u independent streams, each boot in its "
                        "own greenlet, latency counted from its intended start; step: add --step-users every --step-time s up to "
                        "-u; spike: -u users, --spike-users more from --spike-at for --spike-duration s.")
    g.add_argument("--arrival-rate", type=positive_float, default=1.0, env_var="LOCUST_ARRIVAL_RATE",
                   help="open shape: boots per second, over all users and workers.")
    g.add_argument("--max-in-flight", type=positive_int, default=100, env_var="LOCUST_MAX_IN_FLIGHT",
                   help="open shape: boots one user may have running at once; an arrival beyond that "
                        "waits (and its wait counts in its latency).")
    g.add_argument("--step-users", type=positive_int, default=1, env_var="LOCUST_STEP_USERS",
                   help="step shape: users added at each step.")
    g.add_argument("--step-time", type=positive_float, default=10.0, env_var="LOCUST_STEP_TIME",
                   help="step shape: seconds between steps.")
    g.add_argument("--spike-users", type=non_negative_int, default=10, env_var="LOCUST_SPIKE_USERS",
                   help="spike shape: users added during the spike.")
    g.add_argument("--spike-at", type=non_negative_float, default=10.0, env_var="LOCUST_SPIKE_AT",
                   help="spike shape: seconds into the run when the spike starts.")
    g.add_argument("--spike-duration", type=positive_float, default=10.0, env_var="LOCUST_SPIKE_DURATION",
                   help="spike shape: seconds the spike lasts.")
    g.add_argument("--load-seed", type=any_int, default=42, env_var="LOCUST_LOAD_SEED",
                   help="Seed of the arrival times (each user draws from its own stream of it).")


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """The options of one run, checked; what the user, the shapes and the run record read."""

    run_dir: Path
    spans_file: Path | None
    username: str
    password: str
    project_name: str
    domain: str
    interface: str
    region: str | None
    flavor: str
    image: str
    poll_interval: float
    boot_timeout: float
    token_per_boot: bool
    think_time: float
    load_shape: str
    arrival_rate: float
    max_in_flight: int
    step_users: int
    step_time: float
    spike_users: int
    spike_at: float
    spike_duration: float
    load_seed: int

    @classmethod
    def from_parsed(cls, opts: argparse.Namespace) -> "LoadOptions":
        """Read and check Locust's parsed options (web UI values arrive here unchecked)."""
        def num(name: str, parse: Callable[[str], Any]) -> Any:
            raw = getattr(opts, name)
            try:
                return parse(str(raw))
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise ValueError(f"--{name.replace('_', '-')}: {exc}") from None

        shape = str(opts.load_shape)
        if shape not in SHAPES:
            raise ValueError(f"--load-shape: {shape!r} is not one of {', '.join(SHAPES)}")
        run_dir = Path(str(opts.run_dir or DEFAULT_RUN_DIR))
        spans = str(opts.locust_spans or "")
        spans_file = None if spans == SPANS_OFF else Path(spans) if spans else run_dir / SPANS_FILE_NAME
        for name in ("flavor", "image", "os_username", "os_project_name"):
            if not str(getattr(opts, name) or "").strip():
                raise ValueError(f"--{name.replace('_', '-')} must not be empty")
        return cls(
            run_dir=run_dir, spans_file=spans_file,
            username=str(opts.os_username), password=str(opts.os_password or ""),
            project_name=str(opts.os_project_name), domain=str(opts.os_domain or "default"),
            interface=str(opts.os_interface or "public"), region=str(opts.os_region or "") or None,
            flavor=str(opts.flavor).strip(), image=str(opts.image).strip(),
            poll_interval=num("poll_interval", positive_float),
            boot_timeout=num("boot_timeout", positive_float),
            token_per_boot=bool(opts.token_per_boot),
            think_time=num("think_time", non_negative_float),
            load_shape=shape,
            arrival_rate=num("arrival_rate", positive_float),
            max_in_flight=num("max_in_flight", positive_int),
            step_users=num("step_users", positive_int),
            step_time=num("step_time", positive_float),
            spike_users=num("spike_users", non_negative_int),
            spike_at=num("spike_at", non_negative_float),
            spike_duration=num("spike_duration", positive_float),
            load_seed=num("load_seed", any_int),
        )

    def public(self) -> dict[str, Any]:
        """The settings as JSON-able data, password left out (it never reaches run output)."""
        data = asdict(self)
        data.pop("password")
        data["run_dir"] = str(self.run_dir)
        data["spans_file"] = str(self.spans_file) if self.spans_file else None
        return data
