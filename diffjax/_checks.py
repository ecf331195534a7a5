"""Argument checks shared by the facade factories: one clear `ValueError` per mistake."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def check_choice(what: str, value: Any, choices: Iterable[str]) -> None:
    """Raises `ValueError` naming the valid choices when `value` is not one of them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; valid choices: {', '.join(map(repr, choices))}")


def check_knobs(what: str, kwargs: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Raises `ValueError` naming the valid knobs when `kwargs` holds an unknown one."""
    allowed = tuple(sorted(allowed))
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) if allowed else "(none)"
        raise ValueError(f"unknown knob(s) {', '.join(unknown)} for {what}; valid knobs: {valid}")


def lookup(what: str, table: Mapping[str, Any], name: str) -> Any:
    """Returns `table[name]`, or raises `ValueError` listing the table's names."""
    if not isinstance(name, str) or name not in table:
        plural = what + ("es" if what.endswith("s") else "s")
        raise ValueError(f"unknown {what} {name!r}; valid {plural}: {', '.join(sorted(table))}")
    return table[name]
