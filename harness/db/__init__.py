"""Nova's database: schema (:mod:`.models`) and the statements the boot path runs (:mod:`.store`)."""

from harness.db.store import NovaDB, Resources

__all__ = ["NovaDB", "Resources"]
