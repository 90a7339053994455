"""Nova's database: schema (:mod:`.models`) and the statements the boot path runs (:mod:`.store`)."""

from harness.db.store import NovaDB, Resources
from harness.db import groups, image_cache  # noqa: E402,F401  (their tables join the schema)

__all__ = ["NovaDB", "Resources"]
