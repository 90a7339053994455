"""Typed scheduler options: what ``--scheduler-opt key=value`` and ``scheduler_options`` accept.

A value arrives as a string from the command line or as a native value from a TOML file or the
environment; each :class:`Option` parses both and names the option and the bad value when it
cannot (the CLI prints that message instead of a traceback).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence


class OptionError(ValueError):
    """A scheduler option with a value it cannot take; the message names both."""


@dataclass(frozen=True)
class Option:
    """One option of an algorithm: its default, what it means, and how a value is parsed."""

    default: Any
    help: str
    parser: Callable[[Any], Any] = str

    def parse(self, key: str, value: Any) -> Any:
        try:
            return self.parser(value)
        except (TypeError, ValueError) as exc:
            raise OptionError(f"scheduler option {key}={value!r}: {exc}") from None


def as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("a number is required")
    return float(value)


def as_int(minimum: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("an integer is required")
        n = int(value)
        if minimum is not None and n < minimum:
            raise ValueError(f"must be >= {minimum}")
        return n
    return parse


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("true or false is required")


def as_choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip()
        if text not in choices:
            raise ValueError(f"choose one of {', '.join(choices)}")
        return text
    return parse


def as_names(known: Callable[[], Sequence[str]]) -> Callable[[Any], list[str]]:
    """A list of names (a list, or a comma-separated string), each one of ``known()``."""
    def parse(value: Any) -> list[str]:
        names = value if isinstance(value, (list, tuple)) else str(value).split(",")
        names = [str(n).strip() for n in names if str(n).strip()]
        valid = list(known())
        bad = [n for n in names if n not in valid]
        if bad:
            raise ValueError(f"unknown {', '.join(bad)} (known: {', '.join(valid)})")
        return names
    return parse
