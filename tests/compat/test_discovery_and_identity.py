"""Version discovery and Keystone's token API, read by keystoneauth1 itself.

keystoneauth's ``Discover`` parses each service's version documents (the root, and the versioned
root) exactly as openstacksdk does when it picks an endpoint and a microversion range; Keystone's
token endpoints are driven through a keystoneauth ``Session`` with a v3 ``Password`` plugin,
authenticated by name and by id.
"""

from __future__ import annotations

import asyncio

import pytest
from keystoneauth1 import discover
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

pytestmark = pytest.mark.timeout(300)


async def test_every_root_discovers(cloud):
    s = cloud.settings

    def scenario() -> None:
        sess = ks_session.Session()
        expect = {  # root -> (version id, min microversion, max microversion)
            s.endpoint("keystone"): ((3, 14), None, None),
            s.endpoint("keystone") + "/v3": ((3, 14), None, None),
            s.endpoint("nova"): ((2, 1), (2, 1), (2, 100)),
            s.endpoint("nova") + "/v2.1": ((2, 1), (2, 1), (2, 100)),
            s.endpoint("glance"): ((2, 17), None, None),
            s.endpoint("glance") + "/versions": ((2, 17), None, None),
            s.endpoint("neutron"): ((2, 0), None, None),
            s.endpoint("cinder"): ((3, 0), (3, 0), (3, 71)),
            s.endpoint("cinder") + "/v3": ((3, 0), (3, 0), (3, 71)),
        }
        for url, (version, lo, hi) in expect.items():
            data = discover.Discover(sess, url).version_data()
            assert data, url
            newest = data[-1]
            assert newest["version"] == version, (url, newest)
            assert newest["url"].startswith(url.split("/v")[0].rstrip("/")), (url, newest["url"])
            assert newest["min_microversion"] == lo and newest["max_microversion"] == hi, (url, newest)
            assert newest["status"] in ("CURRENT", "stable".upper()), (url, newest)
        # a versioned endpoint names the version it served, asked by either header (or none)
        user = ks_session.Session(auth=v3.Password(
            auth_url=cloud.auth_url, username="demo", password="demo", project_name="demo",
            user_domain_id="default", project_domain_id="default"))
        nova = s.endpoint("nova") + "/v2.1"
        for headers, served in (({"OpenStack-API-Version": "compute 2.61"}, "2.61"),
                                ({"X-OpenStack-Nova-API-Version": "2.47"}, "2.47"),
                                ({"OpenStack-API-Version": "compute latest"}, "2.100"), ({}, "2.1")):
            resp = user.get(nova + "/flavors/detail", headers=headers)
            assert resp.headers["OpenStack-API-Version"] == f"compute {served}"
            assert resp.headers["X-OpenStack-Nova-API-Version"] == served
            assert ("extra_specs" in resp.json()["flavors"][0]) == (served in ("2.61", "2.100"))
        volumes = s.endpoint("cinder") + f"/v3/{user.get_project_id()}/volumes"
        assert user.get(volumes).headers["OpenStack-API-Version"] == "volume 3.0"
        resp = user.get(volumes, headers={"OpenStack-API-Version": "volume 3.50"})
        assert resp.headers["OpenStack-API-Version"] == "volume 3.50"
        # keystonemiddleware turns an unauthenticated request away before any version is chosen
        resp = sess.get(nova + "/flavors", headers={"OpenStack-API-Version": "compute 2.61"},
                        authenticated=False, raise_exc=False)
        assert resp.status_code == 401 and "OpenStack-API-Version" not in resp.headers

    await asyncio.to_thread(scenario)


async def test_keystone_token_api(cloud):
    auth_url = cloud.auth_url

    def scenario() -> None:
        by_name = ks_session.Session(auth=v3.Password(
            auth_url=auth_url, username="demo", password="demo", project_name="demo",
            user_domain_name="Default", project_domain_id="default"))
        token = by_name.get_token()
        access = by_name.auth.get_access(by_name)
        assert access.project_name == "demo" and access.role_names == ["member"]
        assert access.service_catalog.url_for(service_type="compute", interface="public").endswith("/v2.1")
        # the same user and project by id
        by_id = ks_session.Session(auth=v3.Password(
            auth_url=auth_url, user_id=access.user_id, password="demo", project_id=access.project_id))
        assert by_id.auth.get_access(by_id).user_id == access.user_id
        admin = ks_session.Session(auth=v3.Password(
            auth_url=auth_url, username="admin", password="admin", project_name="admin",
            user_domain_id="default", project_domain_id="default"))

        # GET: the full token body
        resp = admin.get(auth_url + "/auth/tokens", headers={"X-Subject-Token": token})
        body = resp.json()["token"]
        assert resp.headers["X-Subject-Token"] == token
        assert {"expires_at", "issued_at", "methods", "user", "project", "roles", "catalog",
                "audit_ids"} <= set(body)
        assert body["methods"] == ["password"] and body["user"]["domain"]["id"] == "default"
        assert body["project"]["name"] == "demo" and body["roles"][0]["name"] == "member"
        nocatalog = admin.get(auth_url + "/auth/tokens?nocatalog", headers={"X-Subject-Token": token})
        assert "catalog" not in nocatalog.json()["token"]
        # HEAD: a user may check their own token
        assert by_name.head(auth_url + "/auth/tokens", headers={"X-Subject-Token": token}).status_code == 200
        # the catalog and the projects the user may scope to
        catalog = by_name.get(auth_url + "/auth/catalog").json()["catalog"]
        assert {c["type"] for c in catalog} >= {"identity", "compute", "image", "network", "volumev3"}
        projects = by_name.get(f"{auth_url}/users/{access.user_id}/projects").json()["projects"]
        assert [p["name"] for p in projects] == ["demo"]
        assert [p["name"] for p in by_name.get(auth_url + "/auth/projects").json()["projects"]] == ["demo"]
        # DELETE revokes: the token is gone for everyone
        assert by_id.delete(auth_url + "/auth/tokens", headers={"X-Subject-Token": token}).status_code == 204
        with pytest.raises(ks_exc.NotFound):
            admin.get(auth_url + "/auth/tokens", headers={"X-Subject-Token": token})
        with pytest.raises(ks_exc.Unauthorized):
            ks_session.Session(auth=v3.Password(
                auth_url=auth_url, username="demo", password="wrong", project_name="demo",
                user_domain_id="default", project_domain_id="default")).get_token()

    await asyncio.to_thread(scenario)
