"""API microversions of Nova and Cinder: what the client asks for, what the service answers.

A client names the version in ``OpenStack-API-Version: compute 2.79`` (or Nova's legacy
``X-OpenStack-Nova-API-Version: 2.79``); no header means the minimum, ``latest`` the maximum. A
malformed version is 400, one outside the service's range 406 (``computeFault``, the key both
projects use for it), as ``nova/api/openstack/wsgi.py`` and Cinder's copy of it answer. Every
response of a versioned endpoint, errors included, names the version it was served at.

The ranges are those of OpenStack 2025.1 (Nova 2.1-2.100, Cinder 3.0-3.71), which cover every
microversion current openstacksdk asks for (``Server._max_microversion`` is 2.100).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response

from harness.services.http import ApiError, Renderer, as_response

_VERSION = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


@dataclass(frozen=True, order=True, slots=True)
class Version:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> "Version":
        return _parse(text)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def at_least(self, text: str) -> bool:
        other = _parse(text)  # compared by fields: the dataclass's ``>=`` builds two tuples
        return self.major > other.major or (self.major == other.major and self.minor >= other.minor)


@functools.lru_cache(maxsize=512)
def _parse(text: str) -> Version:
    """Parsed once per distinct text: views ask ``at_least("2.47")`` and the like per field."""
    m = _VERSION.match(text.strip())
    if m is None:
        raise ValueError(text)
    return Version(int(m.group(1)), int(m.group(2)))


@dataclass(frozen=True, slots=True)
class VersionRange:
    """One service's microversion range and its header names."""

    service_type: str  # the word in ``OpenStack-API-Version: <service_type> X.Y``
    min: Version
    max: Version
    legacy_header: str | None = None  # Nova's X-OpenStack-Nova-API-Version

    def requested(self, headers: Mapping[str, str]) -> str | None:
        """The version text the client asked for, or None (headers are looked up lower-case)."""
        raw = headers.get("openstack-api-version")
        if raw:
            # A list of "service version" pairs; only ours counts (others may name other services).
            for item in raw.split(","):
                parts = item.strip().split()
                if len(parts) == 2 and parts[0].lower() == self.service_type:
                    return parts[1]
        if self.legacy_header:
            legacy = headers.get(self.legacy_header.lower())
            if legacy:
                return legacy.strip()
        return None

    def negotiate(self, headers: Mapping[str, str]) -> Version:
        """The version to serve; :class:`ApiError` 400 (malformed) or 406 (unsupported)."""
        text = self.requested(headers)
        if text is None:
            return self.min
        if text.lower() == "latest":
            return self.max
        try:
            ver = Version.parse(text)
        except ValueError:
            raise ApiError(400, f"API Version String {text} is of invalid format. Must be of "
                                "format MajorNum.MinorNum.") from None
        if not self.min <= ver <= self.max:
            raise ApiError(406, f"Version {text} is not supported by the API. Minimum is "
                                f"{self.min} and maximum is {self.max}.", kind="computeFault")
        return ver

    def response_headers(self, ver: Version) -> dict[str, str]:
        headers = {"OpenStack-API-Version": f"{self.service_type} {ver}"}
        vary = ["OpenStack-API-Version"]
        if self.legacy_header:
            headers[self.legacy_header] = str(ver)
            vary.append(self.legacy_header)
        headers["Vary"] = ", ".join(vary)
        return headers

    def raw_response_headers(self, ver: Version) -> tuple[tuple[bytes, bytes], ...]:
        """:meth:`response_headers` as ASGI's lower-case byte pairs."""
        return tuple((k.lower().encode("latin-1"), v.encode("latin-1"))
                     for k, v in self.response_headers(ver).items())


def _stamp(resp: Response, pairs: tuple[tuple[bytes, bytes], ...]) -> None:
    """Add the version headers to ``resp``: appended as prebuilt pairs (Starlette's header dict
    encodes and searches the whole list on every insert), unless the endpoint already set one of
    them, which then is replaced as ``headers.update`` would."""
    raw = resp.raw_headers
    for key, _ in raw:
        if key in _STAMPED:
            for k, v in pairs:
                resp.headers[k.decode("latin-1")] = v.decode("latin-1")
            return
    raw.extend(pairs)


#: every header name :func:`_stamp` may add (lower-case bytes, as ``raw_headers`` holds them)
_STAMPED = frozenset({b"openstack-api-version", b"x-openstack-nova-api-version", b"vary"})


COMPUTE = VersionRange("compute", Version(2, 1), Version(2, 100), "X-OpenStack-Nova-API-Version")
VOLUME = VersionRange("volume", Version(3, 0), Version(3, 71))


def versioned(vr: VersionRange, render: Renderer):
    """Decorator for an endpoint of a versioned API (see :func:`harness.services.http.handler`).

    It negotiates the version before the endpoint runs (:func:`api_version` tells it) and stamps
    the response with it, an error response too, as Nova's ``Fault`` does; a 401 stays bare, as
    keystonemiddleware sends it before the API is reached.
    """

    def wrap(func: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
        stamps: dict[Version, tuple[tuple[bytes, bytes], ...]] = {}  # built once per version

        async def endpoint(request: Request) -> Response:
            scope = request.scope
            ver = vr.negotiate(_version_headers(scope["headers"]))
            scope[_SCOPE_KEY] = ver
            try:
                resp = as_response(await func(request))  # handler()'s conversion, one coroutine less
            except ApiError as err:
                if err.status == 401:  # keystonemiddleware answers before the API sees a version
                    raise
                resp = render(err)
            pairs = stamps.get(ver)
            if pairs is None:
                pairs = stamps[ver] = vr.raw_response_headers(ver)
            _stamp(resp, pairs)
            return resp

        endpoint.__name__ = func.__name__
        return endpoint

    return wrap


#: Where :func:`versioned` keeps the negotiated version: the request's ASGI scope (a
#: ``request.state`` attribute would build a State object per request to set and to read it).
_SCOPE_KEY = "harness.api_version"

#: The request headers that name a version, as ASGI spells them.
_VERSION_HEADERS = frozenset({b"openstack-api-version", b"x-openstack-nova-api-version"})


def _version_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The version headers of a request, lower-case names to values (the first of each, as
    Starlette's ``Headers.get`` answers), found in one pass over the raw header list."""
    found: dict[str, str] = {}
    for key, value in raw:
        if key in _VERSION_HEADERS:
            name = key.decode("latin-1")
            if name not in found:
                found[name] = value.decode("latin-1")
    return found


def api_version(request: Request) -> Version:
    """The version :func:`versioned` negotiated for this request."""
    return request.scope[_SCOPE_KEY]
