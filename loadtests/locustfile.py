"""The locustfile: ``locust -f loadtests/locustfile.py`` (web UI on http://localhost:8089).

``--host`` is Keystone's v3 auth URL and defaults to the embedded cloud's
(``http://127.0.0.1:5000/v3``, what ``harness up`` serves); every other endpoint comes from the
token's catalog. ``locust -f loadtests/locustfile.py --help`` lists the harness's own options under
"OpenStack boot harness" (shape, arrival rate, poll interval, image, flavor, ...); they are fields of
the web UI's start form too. The README's "Load tests with Locust" section has the three ways to run
it: web UI, headless, distributed.

This file only puts the pieces where Locust looks for them: the user class, the shape class and the
event hooks. The code is in the :mod:`loadtests` package.
"""

from locust import events

from loadtests.boot_user import BootUser
from loadtests.hooks import register
from loadtests.shapes import HarnessShape

register(events)

__all__ = ["BootUser", "HarnessShape"]
