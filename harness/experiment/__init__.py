"""``harness bench``: a matrix of schedulers x load levels x profiles, run cell by cell, reported
together, checked against SLAs (as Rally's task runner does for its scenarios)."""
