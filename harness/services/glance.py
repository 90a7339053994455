"""glance-api (image v2): the image catalogue nova-compute reads in steps 20-22.

Images are seeded with realistic sizes; ``size`` drives the cost of copying an image into a
compute host's cache (see :mod:`harness.services.nova_compute`). The list pages as Glance does
(``limit`` default 25, at most 1000, ``marker``, a ``next`` link while a page is full) and filters
by ``name``, ``status``, ``visibility``, ``disk_format`` and ``os_distro``. Errors come from webob
in Glance, so their body follows the request's ``Accept``: HTML by default, JSON or plain text
when asked (:class:`WebobError`).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from harness.services.base import CloudContext, HttpService
from harness.services.http import ApiError, handler, make_app
from harness.steps import Step
from harness.telemetry import caller_step

MB = 1024 * 1024
LIMIT_DEFAULT, LIMIT_MAX = 25, 1000  # glance-api.conf limit_param_default, api_limit_max


class WebobError(Response):
    """A Glance error, rendered when sent: webob picks HTML, JSON or text from ``Accept``.

    ``*/*`` or no ``Accept`` gets HTML (webob's first offer), ``application/json`` gets
    ``{"message", "code", "title"}``, anything else the plain ``404 Not Found\n\n<message>``.
    """

    def __init__(self, err: ApiError) -> None:
        super().__init__(status_code=err.status)
        self.err = err
        self.title = HTTPStatus(err.status).phrase

    def _negotiate(self, accept: str) -> tuple[str, str]:
        status = f"{self.err.status} {self.title}"
        offers = [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]
        choice = "text/html"
        for offer in offers:
            if offer in ("text/html", "text/*", "*/*"):
                choice = "text/html"
                break
            if offer in ("application/json", "application/*"):
                choice = "application/json"
                break
        else:
            if offers:
                choice = "text/plain"
        msg = self.err.message
        if choice == "application/json":
            return choice, json.dumps({"message": f"{msg}<br /><br />\n\n\n", "code": status,
                                       "title": self.title})
        if choice == "text/html":
            return "text/html", (f"<html>\n <head>\n  <title>{status}</title>\n </head>\n <body>\n"
                                 f"  <h1>{status}</h1>\n  {msg}<br /><br />\n\n\n\n </body>\n</html>")
        return "text/plain", f"{status}\n\n{msg}\n\n   "

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        media, text = self._negotiate(headers.get("accept", ""))
        body = text.encode()
        await send({"type": "http.response.start", "status": self.status_code, "headers": [
            (b"content-type", f"{media}; charset=UTF-8".encode()),
            (b"content-length", str(len(body)).encode()),
        ]})
        await send({"type": "http.response.body", "body": body})


def glance_error(err: ApiError) -> Response:
    return WebobError(err)


@dataclass(frozen=True)
class Image:
    name: str
    size: int
    disk_format: str = "qcow2"
    min_disk: int = 0
    min_ram: int = 0
    arch: str = "x86_64"
    os_distro: str = ""
    id: str = field(default="")

    def with_id(self) -> "Image":
        return Image(**{**asdict(self), "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"harness/image/{self.name}"))})


#: Seeded images (sizes as the public cloud images are published, rounded).
SEED_IMAGES = [
    Image("cirros-0.6.2-x86_64-disk", 21 * MB, os_distro="cirros"),
    Image("ubuntu-24.04-server-cloudimg-amd64", 584 * MB, min_disk=4, min_ram=512, os_distro="ubuntu"),
    Image("fedora-cloud-base-41", 519 * MB, min_disk=5, min_ram=1024, os_distro="fedora"),
    Image("centos-stream-9-genericcloud", 1187 * MB, min_disk=10, min_ram=1024, os_distro="centos"),
    Image("debian-12-genericcloud-arm64", 402 * MB, min_disk=2, arch="aarch64", os_distro="debian"),
]


class Glance(HttpService):
    name = "glance-api"
    port_name = "glance"

    def __init__(self, ctx: CloudContext) -> None:
        super().__init__(ctx)
        self.images = {img.id: img for img in (i.with_id() for i in SEED_IMAGES)}
        self.auth = self.token_validator(account="glance")

    def view(self, img: Image) -> dict[str, Any]:
        return {
            "id": img.id, "name": img.name, "status": "active", "visibility": "public",
            "protected": False, "os_hidden": False, "owner": None,
            "size": img.size, "virtual_size": None, "disk_format": img.disk_format,
            "container_format": "bare", "min_disk": img.min_disk, "min_ram": img.min_ram,
            "checksum": uuid.uuid5(uuid.NAMESPACE_OID, img.id).hex,
            "architecture": img.arch, "hw_architecture": img.arch, "os_distro": img.os_distro,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "tags": [], "self": f"/v2/images/{img.id}", "file": f"/v2/images/{img.id}/file",
            "direct_url": f"file:///var/lib/glance/images/{img.id}",
            "schema": "/v2/schemas/image",
        }

    async def show(self, request: Request):
        in_build = caller_step() == Step.COMPUTE_GET_IMAGE  # steps 21-22 of a build
        await self.auth.validate(
            request.headers.get("x-auth-token"), step=Step.GLANCE_VALIDATE_TOKEN if in_build else None
        )
        image_id = request.path_params["image_id"]
        step = Step.GLANCE_RETURN_IMAGE if in_build else None
        img = self.images.get(image_id)
        if step is None:
            if img is None:
                raise ApiError(404, f"No image found with ID {image_id}")
            return self.view(img), 200
        async with self.latency.span(self.tracer, step, attributes={"openstack.image.id": image_id}):
            if img is None:
                raise ApiError(404, f"No image found with ID {image_id}")
            return self.view(img), 200

    async def index(self, request: Request):
        await self.auth.validate(request.headers.get("x-auth-token"))
        q = request.query_params
        images = sorted(self.images.values(), key=lambda i: (i.name, i.id))
        views = [self.view(i) for i in images]
        for key in ("name", "status", "visibility", "disk_format", "container_format", "os_distro", "id"):
            if key in q:
                views = [v for v in views if str(v.get(key)) == q[key]]
        limit = LIMIT_DEFAULT
        if "limit" in q:
            try:
                limit = int(q["limit"])
            except ValueError:
                raise ApiError(400, "limit param must be an integer") from None
            if limit < 0:
                raise ApiError(400, "limit param must be positive")
            limit = min(limit, LIMIT_MAX)
        if "marker" in q:
            ids = [v["id"] for v in views]
            if q["marker"] not in ids:
                raise ApiError(400, f"Image with identifier {q['marker']} not found")
            views = views[ids.index(q["marker"]) + 1:]
        page = views[:limit]
        body: dict[str, Any] = {"images": page, "first": "/v2/images", "schema": "/v2/schemas/images"}
        if page and len(page) == limit:
            params = [(k, v) for k, v in q.multi_items() if k not in ("marker", "limit")]
            params += [("limit", str(limit)), ("marker", page[-1]["id"])]
            body["next"] = "/v2/images?" + urlencode(params)
        return body, 200

    def _versions(self) -> dict[str, Any]:
        values = []
        for vid in ("v2.17", "v2.16", "v2.15", "v2.9", "v2.7", "v2.6", "v2.5", "v2.4", "v2.3", "v2.2",
                    "v2.1", "v2.0"):
            values.append({"id": vid, "status": "CURRENT" if vid == "v2.17" else "SUPPORTED",
                           "links": [{"rel": "self", "href": f"{self.base_url}/v2/"}]})
        return {"versions": values}

    async def versions(self, request: Request):
        return self._versions(), 300 if request.url.path == "/" else 200

    def build_app(self):
        routes = [
            Route("/", handler(self.versions), methods=["GET"]),
            Route("/versions", handler(self.versions), methods=["GET"]),
            Route("/v2/images", handler(self.index), methods=["GET"]),
            Route("/v2/images/{image_id}", handler(self.show), methods=["GET"]),
        ]
        return make_app(routes, render=glance_error, tracer=self.tracer, port=self.port)
