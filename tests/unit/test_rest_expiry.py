"""Token expiry strings as epoch seconds (``rest._iso_to_epoch``): Keystone's ``Z`` form, offsets,
and a time with no offset read as UTC."""

from datetime import datetime, timedelta, timezone

from harness.services.keystone import _iso
from harness.services.rest import _iso_to_epoch


def test_keystone_z_form_round_trips() -> None:
    for ts in (0.0, 1_764_000_000.123, 2_000_000_000.999):
        assert _iso_to_epoch(_iso(ts)) == datetime.fromisoformat(_iso(ts).replace("Z", "+00:00")).timestamp()
        assert abs(_iso_to_epoch(_iso(ts)) - ts) < 0.001


def test_offsets_and_naive_times() -> None:
    moment = datetime(2026, 11, 25, 16, 50, 0, 123456, tzinfo=timezone.utc)
    plus_one = moment.astimezone(timezone(timedelta(hours=1))).isoformat()
    assert plus_one.endswith("+01:00") and _iso_to_epoch(plus_one) == moment.timestamp()
    assert _iso_to_epoch("2026-11-25T16:50:00.123456") == moment.timestamp()
