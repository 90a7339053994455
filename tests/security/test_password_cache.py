"""Keystone's verified-password cache: a user's second login skips bcrypt, a wrong password never
does, the cache holds no password in clear, and ``password_cache=false`` pays bcrypt every time."""

from __future__ import annotations

import bcrypt
import pytest

from harness.client import CloudError, OpenStackClient
from harness.config import Account, _default_accounts

SECRET_PASSWORD = "pw-cache-3Fz!unique"


@pytest.fixture
def bcrypt_calls(monkeypatch):
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr("harness.services.keystone.bcrypt.checkpw", counting)
    return calls


def _accounts() -> list[Account]:
    return [*_default_accounts(), Account(name="carol", password=SECRET_PASSWORD, project="carol", role="member")]


async def _login(cloud, password: str) -> str:
    async with OpenStackClient(cloud.auth_url, username="carol", password=password, project="carol") as c:
        return await c.authenticate()


@pytest.mark.parametrize("cached", [True, False])
async def test_second_login_skips_bcrypt_only_when_cached(make_cloud, bcrypt_calls, cached):
    async with make_cloud(accounts=_accounts(), password_cache=cached) as cloud:
        bcrypt_calls.clear()  # the services' own logins at start-up
        first = await _login(cloud, SECRET_PASSWORD)
        second = await _login(cloud, SECRET_PASSWORD)
        assert first != second  # two tokens issued either way
        carol = [p for p in bcrypt_calls if p == SECRET_PASSWORD.encode()]
        assert len(carol) == (1 if cached else 2)


async def test_wrong_password_always_gets_bcrypt_and_401(make_cloud, bcrypt_calls):
    async with make_cloud(accounts=_accounts()) as cloud:
        await _login(cloud, SECRET_PASSWORD)
        bcrypt_calls.clear()
        for _ in range(2):
            with pytest.raises(CloudError) as err:
                await _login(cloud, SECRET_PASSWORD + "x")
            assert err.value.status == 401
        assert len(bcrypt_calls) == 2
        # the right password still works from the cache afterwards
        await _login(cloud, SECRET_PASSWORD)
        assert len(bcrypt_calls) == 2
        keystone = cloud.service("keystone")
        remembered = keystone._verified  # type: ignore[attr-defined]
        assert remembered and SECRET_PASSWORD not in repr(remembered)
        assert all(SECRET_PASSWORD.encode() not in d for d in remembered.values())
