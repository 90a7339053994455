"""glance-api (image v2): the image catalogue nova-compute reads in steps 20-22.

Images are seeded with realistic sizes; ``size`` drives the cost of copying an image into a
compute host's cache (see :mod:`harness.services.nova_compute`).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from harness.services.base import CloudContext, HttpService
from harness.services.http import ApiError, glance_error, handler, make_app
from harness.steps import Step
from harness.telemetry import caller_step, step_span

MB = 1024 * 1024


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
        with step_span(self.tracer, step, attributes={"openstack.image.id": image_id}):
            await self.latency.delay(step)
            if img is None:
                raise ApiError(404, f"No image found with ID {image_id}")
            return self.view(img), 200

    async def index(self, request: Request):
        await self.auth.validate(request.headers.get("x-auth-token"))
        q = request.query_params
        images = sorted(self.images.values(), key=lambda i: i.name)
        if "name" in q:
            images = [i for i in images if i.name == q["name"]]
        return {"images": [self.view(i) for i in images], "first": "/v2/images", "schema": "/v2/schemas/images"}, 200

    def _versions(self) -> dict[str, Any]:
        values = []
        for vid in ("v2.16", "v2.15", "v2.9", "v2.7", "v2.6", "v2.5", "v2.4", "v2.3", "v2.2", "v2.1", "v2.0"):
            values.append({"id": vid, "status": "CURRENT" if vid == "v2.16" else "SUPPORTED",
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
