"""``/v2.1/os-harness-faults``: the admin API that sets faults while a cloud runs.

It lives on nova-api, as a compute API extension would: Keystone-authenticated, admin only
(``os_compute_api:os-harness-faults:*``, 403 otherwise), microversioned like every compute route,
bodies checked against :class:`~harness.faults.FaultSpec` (400 naming the bad value, 413 before a
large body is read). In the embedded cloud every service shares one injector, so a fault set here
acts anywhere; with one process per service it acts in nova-api's process only (the profile's
``[faults]`` act everywhere).

* ``GET    /v2.1/os-harness-faults``            every fault, whether it is active, what it did
* ``POST   /v2.1/os-harness-faults``            ``{"fault": {...}}`` adds one (same id: replaces)
* ``PUT    /v2.1/os-harness-faults``            ``{"faults": [...]}`` replaces them all
* ``DELETE /v2.1/os-harness-faults``            clears them all
* ``GET|DELETE /v2.1/os-harness-faults/{id}``   one fault
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.routing import Route

from harness.faults import FaultInjector, parse_specs
from harness.services.http import ApiError, json_body
from harness.services.rest import AuthContext

if TYPE_CHECKING:
    from harness.services.nova_api import NovaApi

PATH = "/os-harness-faults"


class FaultsController:
    def __init__(self, api: "NovaApi") -> None:
        self.api = api

    @property
    def faults(self) -> FaultInjector:
        faults = getattr(self.api.latency, "faults", None)
        if faults is None:
            raise ApiError(501, "Fault injection is not enabled in this cloud.")
        return faults

    def routes(self, v: str) -> list[Route]:
        ep = self.api.endpoint
        p = f"{v}{PATH}"
        return [
            Route(p, ep(self.index), methods=["GET"]),
            Route(p, ep(self.create), methods=["POST"]),
            Route(p, ep(self.replace), methods=["PUT"]),
            Route(p, ep(self.clear), methods=["DELETE"]),
            Route(f"{p}/{{fault_id}}", ep(self.show), methods=["GET"]),
            Route(f"{p}/{{fault_id}}", ep(self.delete), methods=["DELETE"]),
        ]

    async def _admin(self, request: Request, action: str) -> AuthContext:
        auth = await self.api.authenticate(request)
        if not auth.is_admin:
            raise ApiError(403, f"Policy doesn't allow os_compute_api:os-harness-faults:{action} "
                                "to be performed.")
        return auth

    def _body(self) -> dict[str, Any]:
        return {"faults": self.faults.snapshot(), "bottlenecks": list(self.api.settings.bottlenecks)}

    async def index(self, request: Request):
        await self._admin(request, "index")
        return self._body(), 200

    async def show(self, request: Request):
        await self._admin(request, "show")
        fid = request.path_params["fault_id"]
        for item in self.faults.snapshot():
            if item["id"] == fid:
                return {"fault": item}, 200
        raise ApiError(404, f"Fault {fid} could not be found.")

    async def create(self, request: Request):
        await self._admin(request, "create")
        body = await json_body(request)
        if set(body) != {"fault"}:
            raise ApiError(400, "The body must be {\"fault\": {...}}.")
        spec = _specs([body["fault"]])[0]
        self.faults.add(spec)
        item = next(i for i in self.faults.snapshot() if i["id"] == spec.id)
        return {"fault": item}, 201

    async def replace(self, request: Request):
        await self._admin(request, "update")
        body = await json_body(request)
        if set(body) != {"faults"} or not isinstance(body["faults"], list):
            raise ApiError(400, "The body must be {\"faults\": [...]}.")
        self.faults.replace(_specs(body["faults"]))
        return self._body(), 200

    async def clear(self, request: Request):
        await self._admin(request, "delete")
        self.faults.clear()
        return None, 204

    async def delete(self, request: Request):
        await self._admin(request, "delete")
        fid = request.path_params["fault_id"]
        if not self.faults.remove(fid):
            raise ApiError(404, f"Fault {fid} could not be found.")
        return None, 204


def _specs(items: list[Any]) -> list:
    try:
        return parse_specs(items)
    except ValueError as exc:
        raise ApiError(400, f"Invalid fault: {exc}") from None
