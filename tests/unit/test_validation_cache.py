"""Schema.check remembers documents that passed (by digest) and never one that failed."""

from __future__ import annotations

import pytest

from harness.services.http import ApiError
from harness.services import validation
from harness.services.validation import Schema

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def test_valid_documents_are_walked_once_and_invalid_ones_always(monkeypatch):
    schema = Schema(SCHEMA)
    walks = []
    real = validation._first_error
    monkeypatch.setattr(validation, "_first_error", lambda v, d: walks.append(d) or real(v, d))
    for _ in range(3):
        schema.check({"name": "a", "extra": [1, 2]})
        schema.check({"extra": [1, 2], "name": "a"})  # same document, keys in another order
    assert len(walks) == 1
    for _ in range(2):
        with pytest.raises(ApiError) as err:
            schema.check({"name": 5})
        assert err.value.status == 400 and "Invalid input for field/attribute name" in str(err.value.message)
    assert len(walks) == 3
    assert all(b"secret" not in d for d in schema._valid)  # digests only


def test_documents_orjson_cannot_encode_are_still_checked():
    schema = Schema(SCHEMA)
    schema.check({"name": "a", "n": 2**70})  # too big for orjson: no digest, plain check
    assert not schema._valid
