"""The route table answers what Starlette's linear scan answers (route and converted parameters)
for a full match, and nothing otherwise (Starlette's router then gives its own 404/405/redirect)."""

from __future__ import annotations

import itertools
from typing import Any

from starlette.routing import Match, Route

from harness.services.http import make_app
from harness.services.routing import RouteTable, TableRouter

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
VALUES = ("abc", "12", "detail", "a-b_c.d", "0d4e9a1c-5f7b-4c1e-9a3d-2b6f8e7c1a90", "x y")


async def _endpoint(request: Any) -> Any:  # never called: the tests only route
    raise AssertionError


def _scan(routes: list[Route], method: str, path: str) -> tuple[Route, dict[str, Any]] | None:
    """Starlette's Router.app: the first route that matches path and method."""
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return route, child["path_params"]
    return None


def _paths(routes: list[Route]) -> set[str]:
    paths: set[str] = {"/", "", "/nowhere", "/v2.1/servers/", "/v2.1/servers//x"}
    for route in routes:
        names = list(route.param_convertors)
        for values in itertools.product(VALUES, repeat=len(names)) if names else [()]:
            path = route.path
            for name, value in zip(names, values):
                path = path.replace("{" + name + (":" + "int" if f"{{{name}:int}}" in path else "") + "}", value)
            paths.update({path, path + "/", path.rstrip("/"), path + "\n", path + "/extra"})
    return paths


def _assert_same(routes: list[Route]) -> int:
    table = RouteTable(routes)
    assert table.usable
    declared = {m for r in routes if r.methods for m in r.methods}
    checked = 0
    for method, path in itertools.product(METHODS, sorted(_paths(routes))):
        hit = table.lookup(method, path)
        if method in declared or hit is not None:  # else: None hands the request to Starlette's scan
            assert hit == _scan(routes, method, path), (method, path)
        checked += 1
    return checked


def test_table_matches_the_scan_on_tricky_routes() -> None:
    routes = [
        Route("/v2.1/servers/{server_id}", _endpoint, methods=["GET"]),  # shadows /detail for GET
        Route("/v2.1/servers/detail", _endpoint, methods=["GET", "POST"]),
        Route("/v2.1/servers", _endpoint, methods=["GET", "POST"]),
        Route("/v2.1/servers/{server_id}", _endpoint, methods=["DELETE"]),
        Route("/v2.1/servers/{server_id}/action", _endpoint, methods=["POST"]),
        Route("/v3/{project_id}/volumes/{volume_id:int}", _endpoint, methods=["GET"]),
        Route("/files/{rest:path}", _endpoint, methods=["PUT"]),
        Route("/any", _endpoint, methods=None),  # an ASGI-style route: every method
        Route("/v2.0/ports.json", _endpoint, methods=["GET"]),  # a dot: escaped, not a wildcard
    ]
    routes[7].methods = None
    assert _assert_same(routes) > 500
    table = RouteTable(routes)
    route, params = table.lookup("GET", "/v2.1/servers/detail")  # type: ignore[misc]
    assert route is routes[0] and params == {"server_id": "detail"}
    route, params = table.lookup("GET", "/v3/p/volumes/42")  # type: ignore[misc]
    assert params == {"project_id": "p", "volume_id": 42}
    assert table.lookup("GET", "/v2.0/portsXjson") is None
    assert table.lookup("PATCH", "/v2.1/servers") is None  # a 405: left to Starlette


async def test_table_matches_the_scan_on_every_service(cloud) -> None:
    checked = 0
    for _, server, _ in cloud._servers:
        node, router = server.config.app, None
        while node is not None and router is None:
            router = getattr(node, "router", None)
            node = getattr(node, "app", None)
        assert router is not None
        checked += _assert_same(list(router.routes))
    assert checked > 5000


def test_a_route_added_later_is_routed() -> None:
    routes = [Route("/a", _endpoint, methods=["GET"])]
    app = make_app(routes, render=lambda err: None, tracer=None, port=1)  # type: ignore[arg-type]
    starlette_app = app.app
    table_router = starlette_app.build_middleware_stack()
    assert isinstance(table_router, TableRouter)
    assert table_router._current().lookup("GET", "/b") is None
    starlette_app.router.routes.append(Route("/b", _endpoint, methods=["GET"]))
    assert table_router._current().lookup("GET", "/b")[0].path == "/b"  # type: ignore[index]
