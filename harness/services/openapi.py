"""Each HTTP service publishes its OpenAPI document at ``GET /openapi.json``.

The document is generated from the service's own route table, so it never drifts from what the
service answers: every route and method, its path parameters, the ``X-Auth-Token`` it needs (all
but the version documents, this document and Keystone's token request), the microversion header
of Nova and Cinder, the usual query parameters of collections, and the JSON schema of each body
the service validates (the same :class:`~harness.services.validation.Schema` objects the handlers
check, so a fuzzer such as schemathesis generates bodies the way clients could send them).
Responses are left open (``default``): the point is "never a 5xx", not response conformance.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

OPENAPI_PATH = "/openapi.json"
_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")
#: Version documents: the only routes answered without a token (besides this document).
_VERSION_PATH = re.compile(r"^/(versions|v[0-9.]+/?)?$")
_ANY_OBJECT: dict[str, Any] = {"type": "object"}


def _body_schemas() -> dict[tuple[str, str, str], Callable[[], dict[str, Any]]]:
    """(service, METHOD, route path) -> the JSON schema its handler validates the body with."""
    from harness.services.keystone_auth import AUTH_SCHEMA
    from harness.services.microversion import COMPUTE
    from harness.services.nova_schemas import ACTIONS, QUOTA_UPDATE, server_create

    def cinder(name: str) -> Callable[[], dict[str, Any]]:
        def get() -> dict[str, Any]:
            from harness.services import cinder as mod

            return getattr(mod, name).validator.schema
        return get

    def faults() -> dict[str, Any]:
        from harness.faults import FaultSpec

        spec = FaultSpec.model_json_schema()
        return {"type": "object", "properties": {"fault": spec}, "required": ["fault"]}

    def faults_all() -> dict[str, Any]:
        from harness.faults import FaultSpec

        spec = FaultSpec.model_json_schema()
        return {"type": "object", "properties": {"faults": {"type": "array", "items": spec}},
                "required": ["faults"]}

    return {
        ("keystone", "POST", "/v3/auth/tokens"): lambda: AUTH_SCHEMA.validator.schema,
        ("nova-api", "POST", "/v2.1/servers"): lambda: server_create(COMPUTE.min).validator.schema,
        ("nova-api", "POST", "/v2.1/servers/{server_id}/action"):
            lambda: {"oneOf": [s.validator.schema for s in ACTIONS.values()]},
        ("nova-api", "PUT", "/v2.1/os-quota-sets/{project_id}"): lambda: QUOTA_UPDATE.validator.schema,
        ("nova-api", "POST", "/v2.1/os-harness-faults"): faults,
        ("nova-api", "PUT", "/v2.1/os-harness-faults"): faults_all,
        ("cinder-api", "POST", "/v3/{project_id}/volumes"): cinder("CREATE_SCHEMA"),
        ("cinder-api", "POST", "/v3/{project_id}/attachments"): cinder("ATTACH_SCHEMA"),
        ("neutron-server", "POST", "/v2.0/ports"):
            lambda: {"type": "object", "properties": {"port": _ANY_OBJECT}, "required": ["port"]},
        ("neutron-server", "PUT", "/v2.0/ports/{port_id}"):
            lambda: {"type": "object", "properties": {"port": _ANY_OBJECT}, "required": ["port"]},
    }


#: Query parameters of collections (all strings on the wire), by service.
_COLLECTION_QUERY = {
    "nova-api": ("limit", "marker", "name", "status", "all_tenants", "project_id", "flavor", "image",
                 "host", "availability_zone", "minRam", "minDisk", "hypervisor_hostname_pattern",
                 "with_servers"),
    "glance-api": ("limit", "marker", "name", "status", "visibility", "disk_format", "os_distro"),
    "neutron-server": ("limit", "marker", "name", "network_id", "device_id", "device_owner", "id",
                       "status", "admin_state_up", "fields"),
    "cinder-api": ("limit", "marker", "offset", "sort", "name", "status", "instance_id", "all_tenants",
                   "with_count"),
    "keystone": ("name", "nocatalog"),
}
_VERSION_HEADERS = {"nova-api": "OpenStack-API-Version", "cinder-api": "OpenStack-API-Version"}


def is_public(service: str, method: str, path: str) -> bool:
    """Routes answered without a token: version discovery, this document, asking for a token."""
    if method in ("GET", "HEAD") and (_VERSION_PATH.match(path) or path == OPENAPI_PATH):
        return True
    return service == "keystone" and method == "POST" and path == "/v3/auth/tokens"


def _routes(app: Any) -> list[Route]:
    """The routes of a Starlette app, found under any middleware wrapping it (``.app``)."""
    seen = 0
    while not hasattr(app, "routes") and hasattr(app, "app") and seen < 10:
        app, seen = app.app, seen + 1
    return [r for r in getattr(app, "routes", []) if isinstance(r, Route)]


def document(service: str, app: Any, *, server_url: str, title: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``service`` from its app's route table."""
    bodies = _body_schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in _routes(app):
        path = _PARAM.sub(lambda m: "{" + m.group(1) + "}", route.path)
        params = _PARAM.findall(route.path)
        for method in sorted(route.methods or ()):
            if method == "HEAD" and "GET" in (route.methods or ()):
                continue  # Starlette adds HEAD to every GET
            op: dict[str, Any] = {
                "operationId": f"{method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', path).rstrip('_')}",
                "responses": {"default": {"description": "the service's answer (an OpenStack error body "
                                                         "for 4xx)"}},
                "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                               for p in params],
            }
            if is_public(service, method, path):
                op["security"] = []
            if service in _VERSION_HEADERS and not is_public(service, method, path):
                op["parameters"].append({"name": _VERSION_HEADERS[service], "in": "header",
                                         "required": False, "schema": {"type": "string"}})
            if method == "GET" and not path.endswith("}") and not is_public(service, method, path):
                op["parameters"].extend(
                    {"name": q, "in": "query", "required": False, "schema": {"type": "string"}}
                    for q in _COLLECTION_QUERY.get(service, ()))
            if method in ("POST", "PUT", "PATCH"):
                schema = bodies.get((service, method, path), lambda: _ANY_OBJECT)()
                op["requestBody"] = {"required": True,
                                     "content": {"application/json": {"schema": schema}}}
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title or f"{service} (OpenStack boot harness)", "version": "1"},
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {"securitySchemes": {"keystoneToken": {
            "type": "apiKey", "in": "header", "name": "X-Auth-Token",
            "description": "a Keystone token (POST /v3/auth/tokens, header X-Subject-Token)"}}},
        "security": [{"keystoneToken": []}],
    }


def add_route(app: Any, svc: Any) -> None:
    """Serve ``GET /openapi.json`` on ``svc``'s app (public, like the version documents)."""
    routes = None
    node, seen = app, 0
    while node is not None and seen < 10:
        if hasattr(node, "router"):
            routes = node.router.routes
            break
        node, seen = getattr(node, "app", None), seen + 1
    if routes is None:
        return
    cache: dict[str, Any] = {}

    async def openapi(request: Request) -> JSONResponse:
        if "doc" not in cache:
            cache["doc"] = document(svc.name, app, server_url=svc.base_url)
        return JSONResponse(cache["doc"])

    routes.append(Route(OPENAPI_PATH, openapi, methods=["GET"]))
