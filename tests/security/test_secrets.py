"""Passwords are stored hashed; tokens and passwords never reach spans, logs or run reports;
services listen on loopback unless told otherwise."""

from __future__ import annotations

import logging
import socket

import bcrypt

from harness.client import OpenStackClient
from harness.config import Account, Settings, _default_accounts
from harness.faults import FaultSpec
from tests.security.helpers import raw, token

SECRET_PASSWORD = "pw-7Qx!unique-4a1b"
WRONG_PASSWORD = "wrong-pw-93kd-unique"
BOGUS_TOKEN = "gAAAAAB-bogus-token-5e1c77"


def _leaks(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s and s in text]


async def test_no_token_or_password_in_spans_logs_or_reports(make_cloud, caplog):
    accounts = [*_default_accounts(), Account(name="carol", password=SECRET_PASSWORD, project="carol",
                                              role="member")]
    caplog.set_level(logging.DEBUG)  # everything any library logs
    async with make_cloud(accounts=accounts) as cloud:
        async with OpenStackClient(cloud.auth_url, username="carol", password=SECRET_PASSWORD,
                                   project="carol") as carol:
            user_token = await carol.authenticate()
            image = next(i["id"] for i in await carol.images() if i["name"].startswith("cirros"))
            server = await carol.create_server("s", image=image)
            assert (await carol.wait_for_status(server["id"], timeout=30))["status"] == "ACTIVE"
            await carol.delete_server(server["id"])
            await carol.wait_for_delete(server["id"], timeout=30)
            # a token revoked while Glance validates it: the build fails, and faults get logged
            cloud.faults.add(FaultSpec(id="revoke", steps=[21], revoke_rate=1.0))
            doomed = await carol.create_server("doomed", image=image)
            assert (await carol.wait_for_status(doomed["id"], timeout=30))["status"] == "ERROR"
            cloud.faults.clear()
        nova = cloud.settings.endpoint("nova") + "/v2.1"
        # failures that carry secrets in: a wrong password, a bogus token, a revoked token
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "carol", "domain": {"id": "default"}, "password": WRONG_PASSWORD}}}}}
        assert (await raw("POST", cloud.auth_url + "/auth/tokens", json=body))[0] == 401
        assert (await raw("GET", nova + "/servers", headers={"X-Auth-Token": BOGUS_TOKEN}))[0] == 401
        assert (await raw("POST", nova + "/servers", headers={"X-Auth-Token": BOGUS_TOKEN},
                          json={"server": {"name": "x", "flavorRef": "1", "imageRef": image}}))[0] == 401
        revoked = await token(cloud, "demo")
        await raw("DELETE", cloud.auth_url + "/auth/tokens", headers={"X-Auth-Token": revoked,
                                                                      "X-Subject-Token": revoked})
        assert (await raw("GET", nova + "/servers", headers={"X-Auth-Token": revoked}))[0] == 401
        service_tokens = [svc.auth._service_token for svc in cloud.services  # type: ignore[attr-defined]
                          if getattr(svc, "auth", None) is not None]
        compute_token = cloud.service("nova-compute")._token  # type: ignore[attr-defined]
        all_tokens = list(cloud.service("keystone").tokens)  # type: ignore[attr-defined]
        run_dir = cloud.run_dir
    secrets = [user_token, BOGUS_TOKEN, revoked, *service_tokens, *all_tokens,
               compute_token[0] if compute_token else "", SECRET_PASSWORD, WRONG_PASSWORD,
               *(a.password for a in accounts if a.role == "service")]
    assert len([s for s in secrets if s]) >= 10
    files = sorted(p for p in run_dir.rglob("*") if p.is_file() and p.suffix != ".db")
    assert any(p.name == "spans.jsonl" for p in files) and any(p.name == "settings.json" for p in files)
    for path in files:
        assert _leaks(path.read_text(errors="replace"), secrets) == [], path.name
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "token was revoked" in logged and _leaks(logged, secrets) == []


async def test_passwords_are_stored_as_bcrypt_hashes(make_cloud):
    accounts = [*_default_accounts(), Account(name="carol", password=SECRET_PASSWORD, project="carol",
                                              role="member")]
    async with make_cloud(accounts=accounts) as cloud:
        keystone = cloud.service("keystone")
        user = keystone.users["carol"]  # type: ignore[attr-defined]
        assert user.password_hash.startswith((b"$2b$", b"$2a$"))
        assert bcrypt.checkpw(SECRET_PASSWORD.encode(), user.password_hash)
        assert SECRET_PASSWORD.encode() not in user.password_hash
        # Keystone's identity store holds no password in clear (the settings it was seeded from
        # do: they are the operator's input, masked whenever written out)
        for store in (keystone.users, keystone.users_by_id, keystone.tokens):  # type: ignore[attr-defined]
            assert SECRET_PASSWORD not in repr(store)
        assert cloud.settings.dump()["accounts"][-1]["password"] == "***"


async def test_services_listen_on_loopback_unless_told(make_cloud):
    assert Settings().bind_host == "127.0.0.1"
    for bind in (None, "127.0.0.2"):
        kw = {"bind_host": bind} if bind else {}
        async with make_cloud(**kw) as cloud:
            addrs = {sock.getsockname()[0] for _, server, _ in cloud._servers
                     for srv in server.servers for sock in srv.sockets}
            assert addrs == {bind or "127.0.0.1"}, addrs
            for _, server, _ in cloud._servers:
                for srv in server.servers:
                    for sock in srv.sockets:
                        assert sock.family == socket.AF_INET
