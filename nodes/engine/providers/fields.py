"""Reading numbers out of provider JSON, where a field may be missing, a string, or a boolean.

JSON's `true` is an int to Python, so every reader refuses booleans explicitly.
"""

from __future__ import annotations

from typing import Any


def as_number(value: Any) -> float | None:
    """A float from a JSON number, else None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def as_int(value: Any) -> int | None:
    """An int from a JSON integer (a seed), else None."""
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def as_fraction(value: Any, *, percent: bool | None) -> float | None:
    """Progress as a fraction in 0..1. `percent` says the scale is 0-100; None guesses from the
    value (BFL sends either form): anything above 1 is taken as a percentage."""
    number = as_number(value)
    if number is None:
        return None
    if percent or (percent is None and number > 1.0):
        number /= 100.0
    return min(max(number, 0.0), 1.0)
