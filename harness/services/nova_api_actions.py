"""``POST /servers/{id}/action``: the server actions cheap to model (``os-stop``, ``os-start``,
``reboot``).

As in Nova, nova-api checks the instance's state (409 ``Cannot 'stop' instance ... while it is in
vm_state stopped`` otherwise), sets the task state (``powering-off``, ``powering-on``,
``rebooting``/``rebooting_hard``), casts the action to the instance's nova-compute and answers
202; compute's fake driver acts and saves the new state through the conductor. An unknown action
is 400 ``There is no such action``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.routing import Route

from harness.services.http import ApiError, json_body
from harness.services.nova_schemas import ACTIONS

if TYPE_CHECKING:
    from harness.services.nova_api import NovaApi


@dataclass(frozen=True, slots=True)
class _Rule:
    """Which states an action starts from (Nova's ``check_instance_state``) and what it sets."""

    action: str  # compute's power_action name
    vm_states: frozenset[str]
    task_states: frozenset[str | None]
    task_state: str  # set by nova-api while compute works


_ALL_REBOOT_TASKS = frozenset({None, "rebooting", "reboot_pending", "reboot_started", "rebooting_hard"})
_RULES = {
    "os-stop": _Rule("stop", frozenset({"active", "error"}), frozenset({None}), "powering-off"),
    "os-start": _Rule("start", frozenset({"stopped"}), frozenset({None}), "powering-on"),
    "reboot:SOFT": _Rule("reboot", frozenset({"active"}), frozenset({None}), "rebooting"),
    "reboot:HARD": _Rule("reboot", frozenset({"active", "stopped", "paused", "suspended", "error"}),
                         _ALL_REBOOT_TASKS, "rebooting_hard"),
}
#: The word Nova's 409 uses for each action.
_VERB = {"os-stop": "stop", "os-start": "start", "reboot:SOFT": "reboot", "reboot:HARD": "reboot"}


class ServerActionsController:
    def __init__(self, api: "NovaApi") -> None:
        self.api = api

    def routes(self, v: str) -> list[Route]:
        return [Route(f"{v}/servers/{{server_id}}/action", self.api.endpoint(self.action), methods=["POST"])]

    async def action(self, request: Request):
        api = self.api
        auth = await api.authenticate(request)
        server_id = request.path_params["server_id"]
        inst = await api.servers.instance(auth, server_id)
        body = await json_body(request)
        name = next(iter(body), "")
        if len(body) != 1 or name not in ACTIONS:
            raise ApiError(400, f"There is no such action: {name or body}")
        ACTIONS[name].check(body)
        key = f"reboot:{body['reboot']['type'].upper()}" if name == "reboot" else name
        rule = _RULES[key]
        for attr in ("vm_state", "task_state"):
            allowed = rule.vm_states if attr == "vm_state" else rule.task_states
            if inst[attr] not in allowed or (attr == "vm_state" and not inst["host"]):
                raise ApiError(409, f"Cannot '{_VERB[key]}' instance {server_id} while it is in "
                                    f"{attr} {inst[attr]}")
        ok = await api.db.update_instance(server_id, {"task_state": rule.task_state},
                                          expected_task_state=list(rule.task_states))
        if not ok:  # another request changed the task state first (Nova's UnexpectedTaskState)
            raise ApiError(409, f"Cannot '{_VERB[key]}' instance {server_id} while it is in task_state "
                                "changing")
        await api.compute.cast(f"compute.{inst['host']}", "power_action", {
            "instance_uuid": server_id, "action": rule.action, "task_state": rule.task_state,
        })
        return None, 202
