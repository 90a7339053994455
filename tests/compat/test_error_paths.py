"""Every error path a real client can hit answers the real status code in the real body shape.

One cloud serves the whole module (the cases only read, or change what no other case reads). Each
case is one request; it checks the status, the project's error body shape (Nova/Cinder
``{"<kind>": {"message", "code"}}``, Keystone ``{"error": {"code", "title", "message"}}``, Neutron
``{"NeutronError": {"type", "message", "detail"}}``, Glance's webob bodies by ``Accept``) and a
piece of the message as the real service words it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx
import pytest
import pytest_asyncio

from harness.cloud import EmbeddedCloud
from harness.config import Account, HostGroup, Settings
from tests.conftest import cloud_settings

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]

UNKNOWN = "8d3c2b0e-5a4f-4c1e-9a8b-0123456789ab"
Body = dict[str, Any] | bytes | Callable[[dict[str, Any]], Any] | None


@dataclass(frozen=True)
class Case:
    name: str
    svc: str  # keystone, nova, glance, neutron, cinder
    method: str
    path: str  # formatted with the context (ids made in setup)
    status: int
    message: str  # a piece of the message, formatted with the context
    kind: str = ""  # nova/cinder body key, or Neutron error type
    body: Body = None
    token: str | None = "demo"  # demo, admin, bogus or None
    headers: dict[str, str] = field(default_factory=dict)


def _auth(user: str = "demo", password: str | None = None, **over: Any) -> dict[str, Any]:
    u: dict[str, Any] = {"name": user, "domain": {"id": "default"}, "password": password or user}
    u = {k: v for k, v in {**u, **over}.items() if v is not None}
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": u}},
                     "scope": {"project": {"name": user, "domain": {"id": "default"}}}}}


def _server(c: dict[str, Any], **fields: Any) -> dict[str, Any]:
    server = {"name": "bad", "flavorRef": "1", "imageRef": c["cirros"], **fields}
    return {"server": {k: v for k, v in server.items() if v is not None}}


#: Nova cases answered without a version (routing errors, the negotiation itself, auth).
UNVERSIONED = {"nova-unknown-path", "nova-wrong-method", "nova-microversion-too-new",
               "nova-microversion-legacy-header", "nova-microversion-malformed",
               "nova-no-token", "nova-bogus-token"}  # 401s come from keystonemiddleware
V237 = {"OpenStack-API-Version": "compute 2.37"}
V238 = {"OpenStack-API-Version": "compute 2.38"}
ATT = {"OpenStack-API-Version": "volume 3.27"}

CASES = [
    # -- Keystone -----------------------------------------------------------------------------
    Case("ks-wrong-password", "keystone", "POST", "/auth/tokens", 401,
         "The request you have made requires authentication", body=_auth(password="nope"), token=None),
    Case("ks-unknown-user", "keystone", "POST", "/auth/tokens", 401,
         "The request you have made requires authentication", body=_auth("nobody", "x"), token=None),
    Case("ks-unknown-project", "keystone", "POST", "/auth/tokens", 401, "requires authentication",
         body=lambda c: {"auth": {**_auth()["auth"], "scope": {"project": {"id": UNKNOWN}}}}, token=None),
    Case("ks-other-users-project", "keystone", "POST", "/auth/tokens", 401, "requires authentication",
         body=lambda c: {"auth": {**_auth()["auth"], "scope": {"project": {"id": c["admin_project"]}}}},
         token=None),
    Case("ks-missing-identity", "keystone", "POST", "/auth/tokens", 400,
         "Invalid input for field 'auth': 'identity' is a required property", body={"auth": {}}, token=None),
    Case("ks-password-not-string", "keystone", "POST", "/auth/tokens", 400,
         "Invalid input for field 'auth/identity/password/user/password': 5 is not of type 'string'",
         body=_auth(password=5), token=None),  # type: ignore[arg-type]
    Case("ks-user-name-without-domain", "keystone", "POST", "/auth/tokens", 400,
         "Expecting to find domain in user", body=_auth(domain=None), token=None),
    Case("ks-unsupported-method", "keystone", "POST", "/auth/tokens", 401,
         "unsupported method: totp", body={"auth": {"identity": {"methods": ["totp"], "totp": {}}}},
         token=None),
    Case("ks-bad-json", "keystone", "POST", "/auth/tokens", 400, "Malformed request body",
         body=b"{not json", token=None),
    Case("ks-validate-unknown-token", "keystone", "GET", "/auth/tokens", 404, "Could not find token",
         headers={"X-Subject-Token": "no-such-token"}, token="admin"),
    Case("ks-validate-others-token", "keystone", "GET", "/auth/tokens", 403,
         "not authorized to perform the requested action: identity:validate_token",
         headers={"X-Subject-Token": "{admin_token}"}),
    Case("ks-no-token", "keystone", "GET", "/auth/catalog", 401, "requires authentication", token=None),
    Case("ks-others-projects", "keystone", "GET", "/users/{admin_user}/projects", 403,
         "identity:list_user_projects"),
    # -- Nova ---------------------------------------------------------------------------------
    Case("nova-no-token", "nova", "GET", "/servers", 401, "requires authentication", "unauthorized", token=None),
    Case("nova-bogus-token", "nova", "GET", "/servers", 401, "requires authentication", "unauthorized",
         token="bogus"),
    Case("nova-unknown-server", "nova", "GET", f"/servers/{UNKNOWN}", 404,
         f"Instance {UNKNOWN} could not be found.", "itemNotFound"),
    Case("nova-server-id-not-uuid", "nova", "GET", "/servers/abc", 404, "Instance abc could not be found.",
         "itemNotFound"),
    Case("nova-delete-unknown", "nova", "DELETE", f"/servers/{UNKNOWN}", 404, "could not be found",
         "itemNotFound"),
    Case("nova-others-server", "nova", "GET", "/servers/{server}", 404, "could not be found", "itemNotFound",
         token="alt"),  # a member of another project
    Case("nova-missing-server", "nova", "POST", "/servers", 400, "'server' is a required property",
         "badRequest", body={"srv": {}}),
    Case("nova-missing-flavor", "nova", "POST", "/servers", 400,
         "Invalid input for field/attribute server. Value: ", "badRequest",
         body=lambda c: _server(c, flavorRef=None)),
    Case("nova-missing-flavor-msg", "nova", "POST", "/servers", 400, "'flavorRef' is a required property",
         "badRequest", body=lambda c: _server(c, flavorRef=None)),
    Case("nova-name-not-string", "nova", "POST", "/servers", 400,
         "Invalid input for field/attribute name. Value: 7. 7 is not of type 'string'", "badRequest",
         body=lambda c: _server(c, name=7)),
    Case("nova-unknown-flavor", "nova", "POST", "/servers", 400, "Invalid flavorRef provided.", "badRequest",
         body=lambda c: _server(c, flavorRef="99")),
    Case("nova-image-not-uuid", "nova", "POST", "/servers", 400,
         "Invalid input for field/attribute imageRef", "badRequest", body=lambda c: _server(c, imageRef="cirros")),
    Case("nova-unknown-image", "nova", "POST", "/servers", 400, "Can not find requested image", "badRequest",
         body=lambda c: _server(c, imageRef=UNKNOWN)),
    Case("nova-no-image-no-volume", "nova", "POST", "/servers", 400, "Missing imageRef attribute",
         "badRequest", body=lambda c: _server(c, imageRef=None)),
    Case("nova-networks-required-237", "nova", "POST", "/servers", 400, "'networks' is a required property",
         "badRequest", body=lambda c: _server(c, networks=None), headers=V237),
    Case("nova-network-uuid-not-uuid-237", "nova", "POST", "/servers", 400,
         "Invalid input for field/attribute networks. Value: [{{'uuid': 'net1'}}]. [{{'uuid': 'net1'}}] is not "
         "valid under any of the given schemas", "badRequest",
         body=lambda c: _server(c, networks=[{"uuid": "net1"}]), headers=V237),
    Case("nova-networks-bad-string", "nova", "POST", "/servers", 400, "Invalid input for field/attribute networks",
         "badRequest", body=lambda c: _server(c, networks="some"), headers=V237),
    Case("nova-unknown-network", "nova", "POST", "/servers", 400, f"Network {UNKNOWN} could not be found.",
         "badRequest", body=lambda c: _server(c, networks=[{"uuid": UNKNOWN}]), headers=V237),
    Case("nova-unknown-port", "nova", "POST", "/servers", 400, f"Port id {UNKNOWN} could not be found.",
         "badRequest", body=lambda c: _server(c, networks=[{"port": UNKNOWN}]), headers=V237),
    Case("nova-port-in-use", "nova", "POST", "/servers", 409, "is still in use.", "conflictingRequest",
         body=lambda c: _server(c, networks=[{"port": c["bound_port"]}]), headers=V237),
    Case("nova-unknown-property", "nova", "POST", "/servers", 400, "Additional properties are not allowed",
         "badRequest", body=lambda c: _server(c, colour="blue")),
    Case("nova-min-disk", "nova", "POST", "/servers", 400,
         "Flavor's disk is smaller than the minimum size specified in image metadata. Flavor disk is "
         "1073741824 bytes, minimum size is 4294967296 bytes.", "badRequest",
         body=lambda c: _server(c, imageRef=c["ubuntu"], flavorRef="1")),
    Case("nova-min-ram", "nova", "POST", "/servers", 400, "Flavor's memory is too small for requested image.",
         "badRequest", body=lambda c: _server(c, imageRef=c["fedora"], flavorRef="1")),
    Case("nova-unknown-az", "nova", "POST", "/servers", 400, "The requested availability zone is not available",
         "badRequest", body=lambda c: _server(c, availability_zone="mars")),
    Case("nova-quota-instances", "nova", "POST", "/servers", 403,
         "Quota exceeded for instances: Requested 1, but already used 0 of 0 instances", "forbidden",
         body=lambda c: _server(c), token="admin"),
    Case("nova-quota-metadata", "nova", "POST", "/servers", 403, "Quota exceeded for metadata_items",
         "forbidden", body=lambda c: _server(c, metadata={f"k{i}": "v" for i in range(129)})),
    Case("nova-metadata-value-too-long", "nova", "POST", "/servers", 400, "is too long", "badRequest",
         body=lambda c: _server(c, metadata={"k": "v" * 256})),
    Case("nova-multi-create", "nova", "POST", "/servers", 400, "min_count and max_count must be 1",
         "badRequest", body=lambda c: _server(c, max_count=3)),
    Case("nova-bfv-unknown-volume", "nova", "POST", "/servers", 400,
         f"Block Device Mapping is Invalid: failed to get volume {UNKNOWN}.", "badRequest",
         body=lambda c: _server(c, imageRef=None, block_device_mapping_v2=[
             {"boot_index": 0, "uuid": UNKNOWN, "source_type": "volume", "destination_type": "volume"}])),
    Case("nova-bfv-volume-in-use", "nova", "POST", "/servers", 400, "status must be 'available'. Currently in 'in-use'",
         "badRequest", body=lambda c: _server(c, imageRef=None, block_device_mapping_v2=[
             {"boot_index": 0, "uuid": c["vol_in_use"], "source_type": "volume", "destination_type": "volume"}])),
    Case("nova-bfv-not-bootable", "nova", "POST", "/servers", 400, "is not bootable.", "badRequest",
         body=lambda c: _server(c, imageRef=None, block_device_mapping_v2=[
             {"boot_index": 0, "uuid": c["vol_blank"], "source_type": "volume", "destination_type": "volume"}])),
    Case("nova-bfv-bad-source", "nova", "POST", "/servers", 400,
         "Invalid input for field/attribute source_type", "badRequest",
         body=lambda c: _server(c, block_device_mapping_v2=[{"boot_index": 0, "source_type": "tape"}])),
    Case("nova-bad-json", "nova", "POST", "/servers", 400, "Malformed request body", "badRequest", body=b"{"),
    Case("nova-body-too-large", "nova", "POST", "/servers", 413, "Request is too large", "overLimit",
         body=b'{"server": {"name": "' + b"x" * (1 << 20) + b'"}}'),
    Case("nova-microversion-too-new", "nova", "GET", "/servers", 406,
         "Version 2.200 is not supported by the API. Minimum is 2.1 and maximum is 2.100.", "computeFault",
         headers={"OpenStack-API-Version": "compute 2.200"}),
    Case("nova-microversion-legacy-header", "nova", "GET", "/servers", 406, "Version 3.0 is not supported",
         "computeFault", headers={"X-OpenStack-Nova-API-Version": "3.0"}),
    Case("nova-microversion-malformed", "nova", "GET", "/servers", 400,
         "API Version String two is of invalid format", "badRequest",
         headers={"OpenStack-API-Version": "compute two"}),
    Case("nova-list-negative-limit", "nova", "GET", "/servers?limit=-1", 400,
         "Invalid input for query parameters limit", "badRequest"),
    Case("nova-list-unknown-marker", "nova", "GET", f"/servers?marker={UNKNOWN}", 400,
         f"marker [{UNKNOWN}] not found", "badRequest"),
    Case("nova-list-bad-status-238", "nova", "GET", "/servers?status=SLEEPY", 400, "Invalid status value",
         "badRequest", headers=V238),
    Case("nova-list-all-tenants-member", "nova", "GET", "/servers/detail?all_tenants=1", 403,
         "os_compute_api:servers:index:get_all_tenants", "forbidden"),
    Case("nova-unknown-action", "nova", "POST", "/servers/{server}/action", 400, "There is no such action: fly",
         "badRequest", body={"fly": None}),
    Case("nova-action-bad-reboot-type", "nova", "POST", "/servers/{server}/action", 400,
         "Invalid input for field/attribute type", "badRequest", body={"reboot": {"type": "GENTLE"}}),
    Case("nova-start-active", "nova", "POST", "/servers/{server}/action", 409,
         "Cannot 'start' instance {server} while it is in vm_state active", "conflictingRequest",
         body={"os-start": None}),
    Case("nova-unknown-flavor-show", "nova", "GET", "/flavors/999", 404, "Flavor 999 could not be found.",
         "itemNotFound"),
    Case("nova-hypervisors-member", "nova", "GET", "/os-hypervisors", 403,
         "Policy doesn't allow os_compute_api:os-hypervisors:list to be performed.", "forbidden"),
    Case("nova-hypervisor-bad-uuid-253", "nova", "GET", "/os-hypervisors/abc", 400, "Invalid uuid abc",
         "badRequest", token="admin", headers={"OpenStack-API-Version": "compute 2.53"}),
    Case("nova-hypervisor-unknown", "nova", "GET", f"/os-hypervisors/{UNKNOWN}", 404,
         f"Hypervisor with ID {UNKNOWN} could not be found.", "itemNotFound", token="admin",
         headers={"OpenStack-API-Version": "compute 2.53"}),
    Case("nova-az-detail-member", "nova", "GET", "/os-availability-zone/detail", 403,
         "os_compute_api:os-availability-zone:detail", "forbidden"),
    Case("nova-quota-update-member", "nova", "PUT", "/os-quota-sets/{demo_project}", 403,
         "os_compute_api:os-quota-sets:update", "forbidden", body={"quota_set": {"instances": 5}}),
    Case("nova-quota-update-bad-value", "nova", "PUT", "/os-quota-sets/{demo_project}", 400,
         "Invalid input for field/attribute instances", "badRequest", token="admin",
         body={"quota_set": {"instances": "many"}}),
    Case("nova-quota-other-project", "nova", "GET", "/os-quota-sets/{admin_project}", 403,
         "os_compute_api:os-quota-sets:show", "forbidden"),
    Case("nova-wrong-method", "nova", "PUT", "/servers", 405, "not allowed", "badMethod", body={}),
    Case("nova-unknown-path", "nova", "GET", "/spaceships", 404, "could not be found", "itemNotFound"),
    # -- Glance (webob: the body follows Accept) ----------------------------------------------
    Case("glance-unknown-image-json", "glance", "GET", f"/images/{UNKNOWN}", 404,
         f"No image found with ID {UNKNOWN}", "json", headers={"Accept": "application/json"}),
    Case("glance-unknown-image-html", "glance", "GET", f"/images/{UNKNOWN}", 404,
         f"No image found with ID {UNKNOWN}", "html", headers={"Accept": "*/*"}),
    Case("glance-unknown-image-text", "glance", "GET", "/images/abc", 404, "No image found with ID abc",
         "text", headers={"Accept": "text/plain"}),
    Case("glance-negative-limit", "glance", "GET", "/images?limit=-1", 400, "limit param must be positive",
         "json", headers={"Accept": "application/json"}),
    Case("glance-limit-not-int", "glance", "GET", "/images?limit=ten", 400, "limit param must be an integer",
         "json", headers={"Accept": "application/json"}),
    Case("glance-unknown-marker", "glance", "GET", f"/images?marker={UNKNOWN}", 400,
         f"Image with identifier {UNKNOWN} not found", "json", headers={"Accept": "application/json"}),
    Case("glance-no-token", "glance", "GET", "/images", 401, "requires authentication", "json", token=None,
         headers={"Accept": "application/json"}),
    # -- Neutron ------------------------------------------------------------------------------
    Case("neutron-unknown-network", "neutron", "GET", f"/networks/{UNKNOWN}", 404,
         f"Network {UNKNOWN} could not be found.", "NetworkNotFound"),
    Case("neutron-unknown-subnet", "neutron", "GET", f"/subnets/{UNKNOWN}", 404,
         f"Subnet {UNKNOWN} could not be found.", "SubnetNotFound"),
    Case("neutron-unknown-port", "neutron", "GET", f"/ports/{UNKNOWN}", 404,
         f"Port {UNKNOWN} could not be found.", "PortNotFound"),
    Case("neutron-delete-unknown-port", "neutron", "DELETE", f"/ports/{UNKNOWN}", 404, "could not be found",
         "PortNotFound"),
    Case("neutron-port-no-network", "neutron", "POST", "/ports", 400,
         "Required attribute 'network_id' not specified", "HTTPBadRequest", body={"port": {"name": "p"}}),
    Case("neutron-port-network-not-uuid", "neutron", "POST", "/ports", 400,
         "Invalid input for network_id. Reason: 'net' is not a valid UUID.", "HTTPBadRequest",
         body={"port": {"network_id": "net"}}),
    Case("neutron-port-unknown-network", "neutron", "POST", "/ports", 404, f"Network {UNKNOWN} could not be found.",
         "NetworkNotFound", body={"port": {"network_id": UNKNOWN}}),
    Case("neutron-port-unknown-attribute", "neutron", "POST", "/ports", 400, "Unrecognized attribute(s) 'colour'",
         "HTTPBadRequest", body=lambda c: {"port": {"network_id": c["network"], "colour": "red"}}),
    Case("neutron-port-name-not-string", "neutron", "POST", "/ports", 400,
         "Invalid input for name. Reason: '5' is not a valid string.", "HTTPBadRequest",
         body=lambda c: {"port": {"network_id": c["network"], "name": 5}}),
    Case("neutron-port-update-read-only", "neutron", "PUT", "/ports/{bound_port}", 400,
         "Cannot update read-only attribute mac_address", "HTTPBadRequest",
         body={"port": {"mac_address": "fa:16:3e:00:00:01"}}),
    Case("neutron-no-body", "neutron", "POST", "/ports", 400, "Resource body required", "HTTPBadRequest",
         body={"network": {}}),
    Case("neutron-bad-limit", "neutron", "GET", "/networks?limit=x", 400, "Invalid input for limit",
         "HTTPBadRequest"),
    Case("neutron-quota-other-project", "neutron", "GET", "/quotas/{admin_project}", 403,
         "rule:get_quota is disallowed by policy", "PolicyNotAuthorized"),
    Case("neutron-no-token", "neutron", "GET", "/networks", 401, "requires authentication", "HTTPUnauthorized",
         token=None),
    # -- Cinder -------------------------------------------------------------------------------
    Case("cinder-unknown-volume", "cinder", "GET", f"/volumes/{UNKNOWN}", 404,
         f"Volume {UNKNOWN} could not be found.", "itemNotFound"),
    Case("cinder-delete-unknown-volume", "cinder", "DELETE", f"/volumes/{UNKNOWN}", 404, "could not be found",
         "itemNotFound"),
    Case("cinder-missing-volume", "cinder", "POST", "/volumes", 400, "'volume' is a required property",
         "badRequest", body={"size": 1}),
    Case("cinder-missing-size", "cinder", "POST", "/volumes", 400, "size is a required parameter",
         "badRequest", body={"volume": {"name": "v"}}),
    Case("cinder-size-not-number", "cinder", "POST", "/volumes", 400,
         "Invalid input for field/attribute size. Value: big.", "badRequest", body={"volume": {"size": "big"}}),
    Case("cinder-size-zero", "cinder", "POST", "/volumes", 400, "0 is less than the minimum of 1", "badRequest",
         body={"volume": {"size": 0}}),
    Case("cinder-unknown-type", "cinder", "POST", "/volumes", 404, "Volume type with name gold could not be found.",
         "itemNotFound", body={"volume": {"size": 1, "volume_type": "gold"}}),
    Case("cinder-unknown-az", "cinder", "POST", "/volumes", 400, "Availability zone 'mars' is invalid.",
         "badRequest", body={"volume": {"size": 1, "availability_zone": "mars"}}),
    Case("cinder-unknown-image", "cinder", "POST", "/volumes", 400,
         "Invalid image identifier or unable to access requested image.", "badRequest",
         body={"volume": {"size": 1, "imageRef": UNKNOWN}}),
    Case("cinder-image-min-disk", "cinder", "POST", "/volumes", 400,
         "Image minDisk size 4 is larger than the volume size 1.", "badRequest",
         body=lambda c: {"volume": {"size": 1, "imageRef": c["ubuntu"]}}),
    Case("cinder-delete-in-use", "cinder", "DELETE", "/volumes/{vol_in_use}", 400,
         "Invalid volume: Volume status must be available or error", "badRequest"),
    Case("cinder-attach-in-use", "cinder", "POST", "/attachments", 400,
         "status must be available or downloading to reserve, but the current status is in-use", "badRequest",
         body=lambda c: {"attachment": {"volume_uuid": c["vol_in_use"], "instance_uuid": c["server"]}},
         headers=ATT),
    Case("cinder-attachments-need-327", "cinder", "GET", "/attachments", 404,
         "The resource could not be found.", "itemNotFound"),
    Case("cinder-microversion-too-new", "cinder", "GET", "/volumes", 406,
         "Version 3.99 is not supported by the API. Minimum is 3.0 and maximum is 3.71.", "computeFault",
         headers={"OpenStack-API-Version": "volume 3.99"}),
    Case("cinder-quota-volumes", "cinder", "POST", "/volumes", 413,
         "VolumeLimitExceeded: Maximum number of volumes allowed (2) exceeded for quota 'volumes'.",
         "overLimit", body={"volume": {"size": 1}}),
    Case("cinder-quota-update-member", "cinder", "PUT", "/os-quota-sets/{demo_project}", 403,
         "volume_extension:quotas:update", "forbidden", body={"quota_set": {"volumes": 50}}),
    Case("cinder-quota-other-project", "cinder", "GET", "/os-quota-sets/{admin_project}", 403,
         "volume_extension:quotas:show", "forbidden"),
    Case("cinder-other-project-url", "cinder", "GET", "/../{admin_project}/volumes", 400,
         "Malformed request url", "badRequest"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ctx(tmp_path_factory):
    accounts = [*Settings().accounts, Account(name="alt", password="alt", project="alt", role="member")]
    settings = cloud_settings(tmp_path_factory.mktemp("errors"), host_groups=[HostGroup(count=2)],
                              accounts=accounts)
    async with EmbeddedCloud(settings) as cloud, httpx.AsyncClient(timeout=60) as http:
        c: dict[str, Any] = {"cloud": cloud, "http": http}
        ks = settings.endpoint("keystone") + "/v3"
        for user in ("demo", "admin", "alt"):
            resp = await http.post(f"{ks}/auth/tokens", json=_auth(user))
            assert resp.status_code == 201, resp.text
            tok = resp.json()["token"]
            c[f"{user}_token"], c[f"{user}_project"] = resp.headers["X-Subject-Token"], tok["project"]["id"]
            c[f"{user}_user"] = tok["user"]["id"]
        demo = {"X-Auth-Token": c["demo_token"]}
        admin = {"X-Auth-Token": c["admin_token"]}
        nova = settings.endpoint("nova") + "/v2.1"
        cinder = settings.endpoint("cinder") + f"/v3/{c['demo_project']}"
        images = (await http.get(settings.endpoint("glance") + "/v2/images", headers=demo)).json()["images"]
        by_name = {i["name"].split("-")[0]: i["id"] for i in images}
        c.update(cirros=by_name["cirros"], ubuntu=by_name["ubuntu"], fedora=by_name["fedora"])
        nets = (await http.get(settings.endpoint("neutron") + "/v2.0/networks", headers=demo)).json()
        c["network"] = nets["networks"][0]["id"]
        # an ACTIVE server of demo's, and its port
        resp = await http.post(f"{nova}/servers", headers=demo, json=_server(c))
        assert resp.status_code == 202, resp.text
        c["server"] = resp.json()["server"]["id"]
        for _ in range(600):
            server = (await http.get(f"{nova}/servers/{c['server']}", headers=demo)).json()["server"]
            if server["status"] != "BUILD":
                break
            await asyncio.sleep(0.1)
        assert server["status"] == "ACTIVE", server
        ports = (await http.get(settings.endpoint("neutron") + "/v2.0/ports", headers=demo,
                                params={"device_id": c["server"]})).json()["ports"]
        c["bound_port"] = ports[0]["id"]
        # a blank (not bootable) volume, and one attached to the server
        for key, body in (("vol_blank", {"size": 1}), ("vol_in_use", {"size": 1, "imageRef": c["cirros"]})):
            resp = await http.post(f"{cinder}/volumes", headers=demo, json={"volume": body})
            assert resp.status_code == 202, resp.text
            c[key] = resp.json()["volume"]["id"]
        for _ in range(600):
            vols = (await http.get(f"{cinder}/volumes/detail", headers=demo)).json()["volumes"]
            if all(v["status"] == "available" for v in vols):
                break
            await asyncio.sleep(0.1)
        resp = await http.post(f"{cinder}/attachments", headers={**demo, **ATT}, json={"attachment": {
            "volume_uuid": c["vol_in_use"], "instance_uuid": c["server"], "connector": {"host": "h"}}})
        assert resp.status_code == 200, resp.text
        # demo may have no more volumes (the Cinder quota case)
        resp = await http.put(settings.endpoint("cinder") + f"/v3/{c['admin_project']}/os-quota-sets/"
                              f"{c['demo_project']}", headers=admin, json={"quota_set": {"volumes": 2}})
        assert resp.status_code == 200, resp.text
        # admin's project may boot nothing (the Nova quota case)
        resp = await http.put(f"{nova}/os-quota-sets/{c['admin_project']}", headers=admin,
                              json={"quota_set": {"instances": 0}})
        assert resp.status_code == 200, resp.text
        yield c


def _url(c: dict[str, Any], case: Case) -> str:
    settings = c["cloud"].settings
    base = {"keystone": settings.endpoint("keystone") + "/v3", "nova": settings.endpoint("nova") + "/v2.1",
            "glance": settings.endpoint("glance") + "/v2", "neutron": settings.endpoint("neutron") + "/v2.0",
            "cinder": settings.endpoint("cinder") + f"/v3/{c['demo_project']}"}[case.svc]
    path = case.path.format(**c)
    if path.startswith("/../"):  # another project's URL
        return base.rsplit("/", 1)[0] + path[3:]
    return base + path


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_error_path(ctx, case: Case):
    c = ctx
    headers = {k: v.format(**c) for k, v in case.headers.items()}
    token = {"demo": c["demo_token"], "admin": c["admin_token"], "alt": c["alt_token"],
             "bogus": "not-a-token", None: None}[case.token]
    if token:
        headers["X-Auth-Token"] = token
    body = case.body(c) if callable(case.body) else case.body
    kwargs: dict[str, Any] = {}
    if isinstance(body, bytes):
        kwargs["content"], headers["Content-Type"] = body, "application/json"
    elif body is not None:
        kwargs["json"] = body
    resp = await c["http"].request(case.method, _url(c, case), headers=headers, **kwargs)
    assert resp.status_code == case.status, resp.text
    message = case.message.format(**c)
    if case.svc == "keystone":
        err = resp.json()["error"]
        assert err["code"] == case.status and err["title"] and message in err["message"], err
        if case.status == 401:
            assert resp.headers["WWW-Authenticate"].startswith("Keystone uri=")
    elif case.svc in ("nova", "cinder"):
        data = resp.json()
        assert list(data) == [case.kind], data
        assert data[case.kind]["code"] == case.status and message in data[case.kind]["message"], data
        if case.svc == "nova" and case.name not in UNVERSIONED:  # errors carry the version too
            assert resp.headers["OpenStack-API-Version"].startswith("compute ")
    elif case.svc == "neutron":
        err = resp.json()["NeutronError"]
        assert err["type"] == case.kind and message in err["message"] and err["detail"] == "", err
    else:  # glance: webob
        if case.kind == "json":
            err = resp.json()
            assert err["code"] == f"{case.status} {resp.reason_phrase}" and message in err["message"], err
        elif case.kind == "html":
            assert resp.headers["content-type"].startswith("text/html")
            assert f"<h1>{case.status} " in resp.text and message in resp.text
        else:
            assert resp.headers["content-type"].startswith("text/plain")
            assert resp.text.startswith(f"{case.status} ") and message in resp.text
