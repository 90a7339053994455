"""The API's timestamp strings: Keystone's millisecond ``Z`` form and Nova's two forms, made with
``isoformat`` (cheaper) but byte-identical to the ``strftime`` patterns OpenStack documents."""

import random
from datetime import datetime, timezone

from harness.services.keystone import _iso
from harness.services.nova_views import iso, iso_usec


def test_isoformat_forms_match_the_strftime_patterns() -> None:
    rng = random.Random(9)
    stamps = [0.0, 0.0005, 0.9995, 1_764_000_000.123456, 2_000_000_000.999999]
    stamps += [rng.uniform(0, 4e9) for _ in range(20_000)]
    for ts in stamps:
        d = datetime.fromtimestamp(ts, tz=timezone.utc)
        assert _iso(ts) == d.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        assert iso(ts) == d.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert iso_usec(ts) == d.strftime("%Y-%m-%dT%H:%M:%S.%f")
    assert iso(None) is None and iso_usec(None) is None
