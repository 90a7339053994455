"""Message ids and step attributes the RPC layer builds faster than the library calls it replaced
must still be what those calls made."""

from __future__ import annotations

import uuid

from harness.messaging.base import Message, uuid4_hex
from harness.steps import ATTR_PHASE, ATTR_STEP, CATALOGUE, Step
from harness.telemetry import STEP_ATTRS, step_attributes


def test_uuid4_hex_is_a_random_version_4_uuid() -> None:
    ids = {uuid4_hex() for _ in range(2000)}
    assert len(ids) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, text)
    assert uuid.UUID(Message(exchange="nova", topic="t", method="m", args={}).message_id).version == 4


def test_step_attributes_are_the_catalogue_s_and_the_caller_s_own() -> None:
    for step, info in CATALOGUE.items():
        assert step_attributes(step) == {ATTR_STEP: int(step), ATTR_PHASE: info.phase.value}
    mine = step_attributes(Step.BOOT_REQUEST)
    mine["x"] = 1  # a caller writing to its copy leaves the shared one alone
    assert "x" not in STEP_ATTRS[Step.BOOT_REQUEST] and "x" not in step_attributes(Step.BOOT_REQUEST)


def test_uuid4_hex_does_not_follow_the_global_random_seed() -> None:
    import random

    random.seed(7)
    first = uuid4_hex()
    random.seed(7)
    assert uuid4_hex() != first
