"""nova-compute: N fake hypervisor hosts, steps 13-14, 19-20, 23, 26 and 29.

Each host consumes its own queue ``compute.<host>`` with Nova's ``max_concurrent_builds`` as a
real limit: a build beyond it waits in the queue, and that wait is in its step-13 span. A build
asks nova-conductor for the instance (it never touches the DB), fetches a token and asks Glance,
Neutron and Cinder for the image, the port and the volumes, then the fake virt driver spawns.
Every failure ends in ``build_failed`` at the conductor (reschedule or ERROR), never in BUILD.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any, Awaitable, Callable

from opentelemetry import trace

from harness.config import HostGroup
from harness.messaging import RpcError
from harness.messaging.rpc import Method
from harness.services.base import CloudContext, Service
from harness.services.nova_periodic import ComputeTasks
from harness.services.rest import catalog_url, password_auth
from harness.steps import TOKEN_FETCH_PHASE, Step
from harness.telemetry import ATTR_PHASE, mark_error

GB = 1024 ** 3


class BuildError(Exception):
    """A build step failed; the message becomes the instance's fault."""


class FakeDriver:
    """The virt driver of one host: an image cache and a spawn that costs modeled time.

    Fetching an image the host lacks costs ``size / bandwidth`` (``image_download_s_per_gb`` in
    the profile); a cached image is nearly free, as Nova's image cache behaves.
    """

    def __init__(self, host: str, tracer: trace.Tracer, latency: Any) -> None:
        self.host, self.tracer, self.latency = host, tracer, latency
        self.image_cache: set[str] = set()
        #: called with an image id once this host has it cached (reports it to the scheduler's view)
        self.on_cached: Callable[[str], Awaitable[None]] | None = None
        self._fetching: dict[str, asyncio.Future] = {}
        self.instances: set[str] = set()

    async def spawn(self, instance_uuid: str, image: dict[str, Any] | None) -> None:
        async with self.latency.span(self.tracer, Step.SPAWN, attributes={
            "openstack.instance.id": instance_uuid, "openstack.host": self.host,
        }) as span:
            if image is not None:
                await self._ensure_image(image, span)
            self.instances.add(instance_uuid)

    async def _ensure_image(self, image: dict[str, Any], span: trace.Span) -> None:
        image_id = image["id"]
        span.set_attribute("openstack.image.cached", image_id in self.image_cache)
        if image_id in self.image_cache:
            return
        pending = self._fetching.get(image_id)
        if pending is not None:  # another build on this host is fetching it: wait for that copy
            await asyncio.shield(pending)
            return
        fut = asyncio.get_running_loop().create_future()
        self._fetching[image_id] = fut
        try:
            seconds = image.get("size", 0) / GB * self.latency.cost("image_download_s_per_gb")
            with self.tracer.start_as_current_span("nova.virt.image_cache.fetch", attributes={
                "openstack.image.id": image_id, "openstack.image.size": image.get("size", 0),
            }):
                await self.latency.sleep_ms(seconds * 1000)
            self.image_cache.add(image_id)
            if self.on_cached is not None:
                await self.on_cached(image_id)
        finally:
            fut.set_result(None)
            self._fetching.pop(image_id, None)

    async def destroy(self, instance_uuid: str) -> None:
        with self.tracer.start_as_current_span("nova.virt.destroy"):
            self.instances.discard(instance_uuid)


class FakeHost:
    """One fake hypervisor host: its capacity, availability zone, virt driver and builds."""

    def __init__(self, name: str, group: HostGroup, settings: Any, tracer: trace.Tracer, latency: Any) -> None:
        self.name, self.group = name, group
        self.driver = FakeDriver(name, tracer, latency)
        self.building: dict[str, asyncio.Event] = {}
        s = settings
        self.row = dict(
            host=name, vcpus=group.vcpus, memory_mb=group.memory_mb, local_gb=group.local_gb,
            cpu_allocation_ratio=s.cpu_allocation_ratio, ram_allocation_ratio=s.ram_allocation_ratio,
            disk_allocation_ratio=s.disk_allocation_ratio, availability_zone=group.availability_zone,
            arch=group.arch, vcpus_used=0, memory_mb_used=0, local_gb_used=0, running_vms=0,
            disabled=False, failed_builds=0, generation=0,
        )


def host_names(groups: list[HostGroup]) -> list[tuple[str, HostGroup]]:
    """Host names of every group: ``<prefix>-<n>``, numbered across groups with the same prefix."""
    out, counters = [], {}
    for group in groups:
        for _ in range(group.count):
            n = counters.get(group.prefix, 0) + 1
            counters[group.prefix] = n
            out.append((f"{group.prefix}-{n}", group))
    return out


class NovaCompute(Service):
    """The nova-compute service of this process: many fake hosts, one queue each.

    The hosts share one tracer provider (one ``service.instance.id`` per process, the host is in
    ``messaging.destination.name`` and ``openstack.host``), one REST client and one reply queue:
    a thousand hosts must not mean a thousand exporter threads.
    """

    name = "nova-compute"

    def __init__(self, ctx: CloudContext, hosts: list[tuple[str, HostGroup]]) -> None:
        super().__init__(ctx)
        self.conductor = self.rpc_client("nova")
        self.hosts: dict[str, FakeHost] = {}
        for name, group in hosts:
            host = FakeHost(name, group, self.settings, self.tracer, self.latency)
            host.driver.on_cached = partial(self._report_cached, host.name)
            self.hosts[name] = host
            self.rpc_server("nova", f"compute.{name}", {
                "build_and_run_instance": Method(partial(self.build_and_run_instance, host),
                                                 receive_step=Step.COMPUTE_RECEIVE_BUILD,
                                                 caller_step=Step.SCHEDULER_CAST_BUILD),
                "terminate_instance": Method(partial(self.terminate_instance, host)),
                "power_action": Method(partial(self.power_action, host)),
            }, workers=self.settings.max_concurrent_builds)
        self._token: tuple[str, list[dict[str, Any]], float] | None = None
        self._default_net: str | None = None
        self.tasks = ComputeTasks(self)  # reaps VMs of servers that are gone

    async def start(self) -> None:
        await super().start()
        self.tasks.periodic.start()

    async def stop(self) -> None:
        await self.tasks.periodic.stop()
        await super().stop()

    # -- the build ----------------------------------------------------------------------------
    async def build_and_run_instance(self, host: FakeHost, instance_uuid: str, spec: dict[str, Any],
                                     alternates: list[str], attempt: int) -> None:
        done = host.building.setdefault(instance_uuid, asyncio.Event())
        where = {"openstack.instance.id": instance_uuid, "openstack.host": host.name}
        inst: dict[str, Any] | None = None
        try:
            inst = await self.conductor.call(
                "conductor", "instance_get", {"instance_uuid": instance_uuid},
                step=Step.COMPUTE_CALL_CONDUCTOR, reply_step=Step.COMPUTE_RECEIVE_INSTANCE_INFO,
            )
            if inst["task_state"] == "deleting":
                return
            if inst["vm_state"] != "building":  # ERROR already (timed out, scheduler gave up)
                with self.tracer.start_as_current_span("nova.compute.build_aborted", attributes=where) as span:
                    span.add_event("build.aborted", {"vm_state": inst["vm_state"]})
                return
            image = await self._get_image(inst)
            addresses, ports = await self._allocate_network(host, inst)
            await self._get_volumes(host, inst)
            await host.driver.spawn(instance_uuid, image)
            ok = await self.conductor.call("conductor", "instance_update", {
                "instance_uuid": instance_uuid,
                "values": {"vm_state": "active", "task_state": None, "power_state": 1,
                           "launched_at": time.time(), "addresses": addresses, "progress": 100,
                           "request": {**inst["request"], "ports": ports}},
                "expected_task_state": ["scheduling"],
            })
            if not ok:  # deleted (a terminate follows) or timed out to ERROR meanwhile: undo it
                with self.tracer.start_as_current_span("nova.compute.build_aborted", attributes=where) as span:
                    span.add_event("instance.not_building_after_spawn")
                    await self._undo_build(host, inst)
        except Exception as exc:  # whatever failed (a fault, a bug), the boot must not stay BUILD
            reason = str(exc) or type(exc).__name__
            # the receive span has ended (the work runs after it): the failure gets its own span
            with self.tracer.start_as_current_span("nova.compute.build_failed", attributes=where) as span:
                mark_error(span, reason, event="build.failed", host=host.name)
                self._token = None  # the failure may be a revoked token: fetch a new one next time
                if inst is not None:
                    await self._undo_build(host, inst)
                try:
                    await self.conductor.call("conductor", "build_failed", {
                        "instance_uuid": instance_uuid, "host": host.name, "reason": reason,
                        "spec": spec, "alternates": alternates, "attempt": attempt,
                    })
                except RpcError:
                    span.add_event("build_failed.unreported", {"reason": reason})
        finally:
            done.set()
            host.building.pop(instance_uuid, None)

    async def _undo_build(self, host: FakeHost, inst: dict[str, Any]) -> None:
        """Give back what a failed attempt took (VM, ports, volume attachments) before it is
        rescheduled or set to ERROR, as Nova's ``_cleanup_allocated_networks`` does."""
        await host.driver.destroy(inst["uuid"])
        try:
            await self._release_network(inst)
            await self._release_attachments(inst)
        except Exception as exc:  # a leak the periodic tasks and a later delete may still catch
            trace.get_current_span().add_event("build.cleanup_failed", {"reason": str(exc) or type(exc).__name__})

    async def _release_attachments(self, inst: dict[str, Any]) -> tuple[str, dict[str, str]] | None:
        """Detach the instance's volumes (the volumes stay: the boot may be rescheduled).

        Returns Cinder's project URL and the headers used, for a caller that goes on to delete."""
        if not inst["request"].get("volumes"):
            return None
        token, catalog = await self._service_token()
        base = self._endpoint(catalog, "volumev3").rsplit("/", 1)[0] + f"/{inst['project_id']}"
        headers = {"X-Auth-Token": token, "OpenStack-API-Version": "volume 3.27"}
        resp = await self.rest.request("GET", f"{base}/attachments", template="/v3/{project_id}/attachments",
                                       params={"instance_id": inst["uuid"]}, headers=headers)
        for att in resp.json().get("attachments", []) if resp.status_code == 200 else []:
            await self.rest.request("DELETE", f"{base}/attachments/{att['id']}",
                                    template="/v3/{project_id}/attachments/{attachment_id}", headers=headers)
        return base, headers

    async def _report_cached(self, host: str, image_id: str) -> None:
        """Tell nova-conductor this host's image cache now holds ``image_id`` (a cast: the boot
        does not wait for the DB write)."""
        try:
            await self.conductor.cast("conductor", "image_cached", {"host": host, "image_id": image_id})
        except RpcError as exc:
            trace.get_current_span().add_event("image_cached.unreported", {"reason": str(exc)})

    async def _service_token(self, for_step: Step | None = None) -> tuple[str, list[dict[str, Any]]]:
        """'nova-compute gets a token from Keystone' (steps 20, 23, 26), or reuses one."""
        if self.settings.compute_token_reuse and self._token and self._token[2] > time.time() + 60:
            return self._token[0], self._token[1]
        user, password, project = self.ctx.service_account("nova")
        try:
            token, body = await password_auth(
                self.rest, self.ctx.keystone_url(), user, password, project, for_step=for_step,
                attributes={ATTR_PHASE: TOKEN_FETCH_PHASE.value, "openstack.boot.substep": "token_fetch"},
            )
        except Exception as exc:
            raise BuildError(f"Could not get a token from Keystone: {exc}") from None
        catalog = body["token"]["catalog"]
        self._token = (token, catalog, time.time() + self.settings.token_ttl)
        return token, catalog

    def _endpoint(self, catalog: list[dict[str, Any]], service_type: str) -> str:
        """The endpoint from the token's catalog (an in-memory lookup: an event on the step's span,
        not a span of its own, which would cost a hundred times the lookup)."""
        url = catalog_url(catalog, service_type, interface="internal", region=self.settings.region)
        span = trace.get_current_span()
        if span.is_recording():  # a cast's method runs after its receive span has ended
            span.add_event("keystone.catalog_lookup", {"openstack.service.type": service_type})
        return url

    async def _get_image(self, inst: dict[str, Any]) -> dict[str, Any] | None:
        """Steps 20-22. A volume-backed server asks Glance for the image its boot volume was made
        from (nova-api recorded it), for the image's metadata only: its disk is the volume, so
        the driver downloads nothing (None)."""
        image_ref = inst["image_ref"] or inst["request"].get("volume_image_ref") or ""
        async with self.latency.span(self.tracer, Step.COMPUTE_GET_IMAGE,
                       attributes={"openstack.image.id": image_ref}):
            token, catalog = await self._service_token(Step.COMPUTE_GET_IMAGE)
            if not image_ref:
                return None
            url = self._endpoint(catalog, "image")
            resp = await self.rest.request(
                "GET", f"{url}/v2/images/{image_ref}", template="/v2/images/{image_id}",
                for_step=Step.COMPUTE_GET_IMAGE, headers={"X-Auth-Token": token},
            )
            if resp.status_code != 200:
                raise BuildError(f"Image {image_ref} could not be fetched: glance-api answered {resp.status_code}")
            return resp.json() if inst["image_ref"] else None

    async def _allocate_network(self, host: FakeHost, inst: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        networks = inst["request"].get("networks", "auto")
        async with self.latency.span(self.tracer, Step.COMPUTE_GET_NETWORK):
            token, catalog = await self._service_token(Step.COMPUTE_GET_NETWORK)
            url = self._endpoint(catalog, "network")
            headers = {"X-Auth-Token": token}
            if networks == "none":
                resp = await self.rest.request(
                    "GET", f"{url}/v2.0/ports", template="/v2.0/ports", params={"device_id": inst["uuid"]},
                    for_step=Step.COMPUTE_GET_NETWORK, headers=headers,
                )
                return {}, []
            requested = networks if isinstance(networks, list) else [{}]
            addresses: dict[str, list[dict[str, Any]]] = {}
            ports: list[str] = []
            for net in requested:
                if "port" in net:
                    resp = await self.rest.request(
                        "GET", f"{url}/v2.0/ports/{net['port']}", template="/v2.0/ports/{port_id}",
                        for_step=Step.COMPUTE_GET_NETWORK, headers=headers,
                    )
                    ok, port = resp.status_code == 200, (resp.json().get("port") if resp.status_code == 200 else None)
                else:
                    body = {"port": {"device_id": inst["uuid"], "device_owner": "compute:nova",
                                     "binding:host_id": host.name, "project_id": inst["project_id"],
                                     "network_id": net.get("uuid") or await self._default_network(url, headers)}}
                    resp = await self.rest.request(
                        "POST", f"{url}/v2.0/ports", template="/v2.0/ports",
                        for_step=Step.COMPUTE_GET_NETWORK, headers=headers, json=body,
                    )
                    ok, port = resp.status_code == 201, (resp.json().get("port") if resp.status_code == 201 else None)
                if not ok or port is None:
                    raise BuildError(f"Network allocation failed: neutron-server answered {resp.status_code}")
                ports.append(port["id"])
                addresses.setdefault("private", []).extend(
                    {"version": 4, "addr": f["ip_address"], "OS-EXT-IPS:type": "fixed",
                     "OS-EXT-IPS-MAC:mac_addr": port["mac_address"]} for f in port["fixed_ips"]
                )
            return addresses, ports

    async def _default_network(self, url: str, headers: dict[str, str]) -> str:
        """The network of a boot that names none (looked up once, then remembered)."""
        if self._default_net is not None:
            return self._default_net
        resp = await self.rest.request("GET", f"{url}/v2.0/networks", template="/v2.0/networks",
                                       params={"name": "private"}, headers=headers)
        nets = resp.json().get("networks", []) if resp.status_code == 200 else []
        if not nets:
            raise BuildError("No network is available for this instance")
        self._default_net = nets[0]["id"]
        return self._default_net

    async def _get_volumes(self, host: FakeHost, inst: dict[str, Any]) -> None:
        volumes = inst["request"].get("volumes") or []
        async with self.latency.span(self.tracer, Step.COMPUTE_GET_VOLUME):
            token, catalog = await self._service_token(Step.COMPUTE_GET_VOLUME)
            # The catalog URL carries the token's project; the instance's project is asked for.
            base = self._endpoint(catalog, "volumev3").rsplit("/", 1)[0] + f"/{inst['project_id']}"
            headers = {"X-Auth-Token": token, "OpenStack-API-Version": "volume 3.27"}
            if not volumes:
                resp = await self.rest.request(
                    "GET", f"{base}/attachments", template="/v3/{project_id}/attachments",
                    params={"instance_id": inst["uuid"]}, for_step=Step.COMPUTE_GET_VOLUME, headers=headers,
                )
                if resp.status_code != 200:
                    raise BuildError(f"Volume lookup failed: cinder-api answered {resp.status_code}")
                return
            for volume_id, _ in volumes:
                resp = await self.rest.request(
                    "POST", f"{base}/attachments", template="/v3/{project_id}/attachments",
                    for_step=Step.COMPUTE_GET_VOLUME, headers=headers,
                    json={"attachment": {"volume_uuid": volume_id, "instance_uuid": inst["uuid"],
                                         "connector": {"host": host.name}}},
                )
                if resp.status_code != 200:
                    raise BuildError(f"Volume {volume_id} could not be attached: cinder-api answered {resp.status_code}")

    # -- server actions (os-stop, os-start, reboot) ---------------------------------------------
    #: action -> (driver span, values saved once the driver is done); power_state 1 RUNNING, 4 SHUTDOWN
    _POWER = {
        "stop": ("nova.virt.power_off", {"vm_state": "stopped", "power_state": 4}),
        "start": ("nova.virt.power_on", {"vm_state": "active", "power_state": 1}),
        "reboot": ("nova.virt.reboot", {"vm_state": "active", "power_state": 1}),
    }

    async def power_action(self, host: FakeHost, instance_uuid: str, action: str, task_state: str) -> bool:
        """Run a power action nova-api cast here, then save the new state through the conductor."""
        span_name, values = self._POWER[action]
        with self.tracer.start_as_current_span(span_name, attributes={
            "openstack.instance.id": instance_uuid, "openstack.host": host.name,
        }):
            pass  # the fake hypervisor changes power state instantly
        return await self.conductor.call("conductor", "instance_update", {
            "instance_uuid": instance_uuid, "values": {**values, "task_state": None},
            "expected_task_state": [task_state],
        })

    # -- delete -------------------------------------------------------------------------------
    async def terminate_instance(self, host: FakeHost, instance_uuid: str) -> None:
        building = host.building.get(instance_uuid)
        if building is not None:
            await building.wait()
        await host.driver.destroy(instance_uuid)
        try:
            inst = await self.conductor.call("conductor", "instance_get", {"instance_uuid": instance_uuid})
        except RpcError:
            inst = None
        try:  # ports go by the server's id, even when it was deleted without us (host was down)
            await self._release_network(inst or {"uuid": instance_uuid})
            if inst is not None:
                await self._release_volumes(inst)
        finally:  # whatever Neutron or Cinder answered, the host's resources are given back
            await self.conductor.call("conductor", "instance_destroy", {"instance_uuid": instance_uuid})

    async def _release_network(self, inst: dict[str, Any]) -> None:
        token, catalog = await self._service_token()
        url = self._endpoint(catalog, "network")
        headers = {"X-Auth-Token": token}
        resp = await self.rest.request("GET", f"{url}/v2.0/ports", template="/v2.0/ports",
                                       params={"device_id": inst["uuid"]}, headers=headers)
        for port in resp.json().get("ports", []) if resp.status_code == 200 else []:
            await self.rest.request("DELETE", f"{url}/v2.0/ports/{port['id']}",
                                    template="/v2.0/ports/{port_id}", headers=headers)

    async def _release_volumes(self, inst: dict[str, Any]) -> None:
        """Detach the volumes, then delete those marked ``delete_on_termination``."""
        released = await self._release_attachments(inst)
        if released is None:
            return
        base, headers = released
        for volume_id, delete_on_termination in inst["request"].get("volumes") or []:
            if delete_on_termination:
                await self.rest.request("DELETE", f"{base}/volumes/{volume_id}",
                                        template="/v3/{project_id}/volumes/{volume_id}", headers=headers)
