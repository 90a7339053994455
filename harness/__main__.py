"""``python -m harness`` = the ``harness`` command (what ``harness up --processes`` starts its
children with, so they run with the supervisor's interpreter and environment)."""

from harness.cli import main

if __name__ == "__main__":
    main()
