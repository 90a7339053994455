"""nova-api (compute v2.1): the REST entry of a boot (steps 3-8) and the rest of the compute API.

This module is the service: its token validator, RPC clients, flavor cache, version discovery and
the routes of its controllers, each in a module of its own as Nova splits them
(:mod:`nova_api_servers` for ``/servers`` and the boot, :mod:`nova_api_actions` for server
actions, :mod:`nova_api_misc` for flavors, availability zones and hypervisors, :mod:`nova_quota`
for limits and quotas). Every endpoint but the version documents is microversioned
(``OpenStack-API-Version: compute 2.1`` .. ``2.100``).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from harness.services.base import CloudContext, HttpService
from harness.services.http import handler, make_app, nova_error
from harness.services.microversion import COMPUTE, versioned
from harness.services.nova_api_actions import ServerActionsController
from harness.services.nova_api_misc import (
    AvailabilityZonesController, FlavorsController, HypervisorsController,
)
from harness.services.nova_api_servers import NO_VALID_HOST, ServersController
from harness.services.nova_faults import FaultsController
from harness.services.nova_quota import QuotaController, QuotaEngine
from harness.services.nova_server_groups import ServerGroupsController
from harness.services.rest import AuthContext
from harness.steps import Step

__all__ = ["NO_VALID_HOST", "NovaApi"]


class NovaApi(HttpService):
    name = "nova-api"
    port_name = "nova"

    def __init__(self, ctx: CloudContext) -> None:
        super().__init__(ctx)
        if ctx.db is None:
            raise ValueError("nova-api needs Nova's DB")
        self.db = ctx.db
        self.auth = self.token_validator(account="nova")
        self.scheduler = self.rpc_client("nova")
        self.compute = self.rpc_client("nova")
        self.flavors: dict[str, dict[str, Any]] = {}
        self.quotas = QuotaEngine(self)
        self.servers = ServersController(self)
        self.controllers = [
            self.servers, ServerActionsController(self), FlavorsController(self),
            AvailabilityZonesController(self), HypervisorsController(self),
            QuotaController(self, self.quotas), ServerGroupsController(self),
            FaultsController(self),  # os-harness-faults: admin API of fault injection
        ]

    async def start(self) -> None:
        await super().start()
        self.flavors = {f["id"]: f for f in await self.db.list_flavors()}

    # -- what the controllers share -------------------------------------------------------------
    async def authenticate(self, request: Request, step: Step | None = None) -> AuthContext:
        """keystonemiddleware's part: the caller's token, validated by Keystone."""
        return await self.auth.validate(request.headers.get("x-auth-token"), step=step)

    def endpoint(self, func: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
        """A microversioned compute endpoint (see :func:`harness.services.microversion.versioned`)."""
        return versioned(COMPUTE, nova_error)(func)

    # -- version discovery ----------------------------------------------------------------------
    def _version(self) -> dict[str, Any]:
        return {"id": "v2.1", "status": "CURRENT", "version": str(COMPUTE.max),
                "min_version": str(COMPUTE.min), "updated": "2013-07-23T11:33:21Z",
                "links": [{"rel": "self", "href": f"{self.base_url}/v2.1/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.compute+json;version=2.1"}]}

    async def versions(self, request: Request):
        return {"versions": [self._version()]}, 200

    async def version_v21(self, request: Request):
        return {"version": self._version()}, 200

    def build_app(self):
        v = "/v2.1"
        routes: list[Route] = [
            Route("/", handler(self.versions), methods=["GET"]),
            Route(v, handler(self.version_v21), methods=["GET"]),
            Route(f"{v}/", handler(self.version_v21), methods=["GET"]),
        ]
        for controller in self.controllers:
            routes.extend(controller.routes(v))
        return make_app(routes, render=nova_error, tracer=self.tracer, port=self.port)
