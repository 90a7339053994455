"""Starlette's routing answer for a request, found by table instead of by scanning every route.

Starlette's ``Router`` tries each route in order (``Route.matches``: a regex match and a scope dict
per route) until one matches path *and* method. Nova's API has dozens of routes and every request
of the cloud's one event loop pays that scan. :class:`RouteTable` gives the same answer in at most
two lookups: per method, a dict of the static paths (each mapped to the route Starlette would pick
for that exact path) and one compiled regex that alternates every route taking that method, in the
router's order, so its first matching alternative is the route Starlette's scan would stop at.

Only a full match (path and method) is answered by the table. Anything else (a 405 for a known path,
a 404, the trailing-slash redirect, a path under ``root_path``, a route that is not a plain
:class:`~starlette.routing.Route`, a router with its own middleware) goes to Starlette's router
itself, so those answers, their headers and bodies stay Starlette's byte for byte.
"""

from __future__ import annotations

import re
from typing import Any, Awaitable

from starlette.convertors import Convertor
from starlette.routing import Route, Router
from starlette.types import Receive, Scope, Send

#: A route the table found: the route and its converted path parameters.
Hit = tuple[Route, dict[str, Any]]


class _MethodTable:
    """The routes taking one method, in router order: static paths by dict, all by one regex."""

    __slots__ = ("static", "regex", "groups")

    def __init__(self, routes: list[Route]) -> None:
        self.groups: dict[str, tuple[Route, tuple[tuple[str, str, Convertor], ...]]] = {}
        alternatives = []
        for j, route in enumerate(routes):
            inner = route.path_regex.pattern[1:-1]  # compile_path's "^...$" without its anchors
            params = []
            for name, convertor in route.param_convertors.items():
                group = f"r{j}_{name}"
                inner = inner.replace(f"(?P<{name}>", f"(?P<{group}>", 1)
                params.append((name, group, convertor))
            alternatives.append(f"(?P<r{j}>{inner})$")
            self.groups[f"r{j}"] = (route, tuple(params))
        self.regex = re.compile("^(?:" + "|".join(alternatives) + ")") if alternatives else None
        # an exact static path: the first route (static or not) whose pattern takes it, as the scan
        self.static: dict[str, Hit] = {}
        for route in routes:
            if route.param_convertors or route.path in self.static:
                continue
            hit = self.match(route.path)
            if hit is not None:
                self.static[route.path] = hit

    def match(self, path: str) -> Hit | None:
        if self.regex is None:
            return None
        m = self.regex.match(path)
        if m is None:
            return None
        route, params = self.groups[m.lastgroup]  # type: ignore[index]  # the outer group closes last
        return route, {name: convertor.convert(m.group(group)) for name, group, convertor in params}


class RouteTable:
    """Per method, what Starlette's scan of ``routes`` finds for a full match; None otherwise."""

    def __init__(self, routes: list[Any]) -> None:
        self.usable = all(type(r) is Route and _anchored(r) for r in routes)
        self._tables: dict[str, _MethodTable] = {}
        if self.usable:
            methods = {m for r in routes if r.methods for m in r.methods}
            for method in methods:
                self._tables[method] = _MethodTable(
                    [r for r in routes if r.methods is None or method in r.methods])

    def lookup(self, method: str, path: str) -> Hit | None:
        table = self._tables.get(method)
        if table is None:
            return None  # no route declares it: Starlette's scan (405/404, or a methods=None route)
        hit = table.static.get(path)
        if hit is not None:
            return hit[0], dict(hit[1])  # the caller's scope gets its own dict
        return table.match(path)


def _anchored(route: Route) -> bool:
    pattern = route.path_regex.pattern
    return pattern.startswith("^") and pattern.endswith("$")


class TableRouter:
    """ASGI app: a full match found by :class:`RouteTable`, handled as Starlette's ``Router.app``
    would (``scope["router"]``, ``["route"]``, ``["endpoint"]``, ``["path_params"]``, then the
    route's app, the method being one it takes); every other request goes to ``router`` itself.

    The table is rebuilt when the number of routes changes (routes appended after the app was made,
    such as ``GET /openapi.json``)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self._table: RouteTable | None = None
        self._count = -1

    def _current(self) -> RouteTable:
        routes = self.router.routes
        if self._table is None or len(routes) != self._count:
            self._table = RouteTable(list(routes))
            plain = getattr(self.router.middleware_stack, "__func__", None) is Router.app
            self._table.usable = self._table.usable and plain
            self._count = len(routes)
        return self._table

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine itself: the caller awaits the route's app (or the router) directly.
        if scope["type"] == "http" and not scope.get("root_path"):
            table = self._current()
            if table.usable:
                hit = table.lookup(scope["method"], scope["path"])
                if hit is not None:
                    route, params = hit
                    if "router" not in scope:
                        scope["router"] = self.router
                    scope["route"] = route
                    scope["endpoint"] = route.endpoint
                    outer = scope.get("path_params")
                    if outer:
                        params = {**outer, **params}
                    scope["path_params"] = params
                    return route.app(scope, receive, send)  # route.handle's other branch is a 405
        return self.router(scope, receive, send)
