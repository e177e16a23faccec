"""Argument types shared by the command lines: every number is checked at the edge (finite, in range).

argparse names the flag in its message (`argument --fps: must be a finite number > 0, got 'nan'`) and exits with
code 2 before anything loads, so a bad number never reaches a model or a long decode.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _bound(low: float | None, high: float | None, low_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"<= {high:g}"
    return ""


def number(
    low: float | None = None, high: float | None = None, *, low_open: bool = False, integer: bool = False
) -> Callable[[str], float | int]:
    """An argparse `type=` that accepts a finite number in [low, high] (`low_open`: low itself excluded)."""
    kind = "a whole number" if integer else "a finite number"
    bound = _bound(low, high, low_open)
    expected = f"{kind} {bound}".strip()

    def parse(text: str) -> float | int:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
        ok = math.isfinite(value) and (not integer or value == int(value))
        ok = ok and (low is None or (value > low if low_open else value >= low))
        ok = ok and (high is None or value <= high)
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return int(value) if integer else value

    parse.__name__ = "integer" if integer else "number"
    return parse


# Common shapes of numbers on the command lines.
positive = number(0, low_open=True)
fraction = number(0.0, 1.0)
fps = number(0, 1000, low_open=True)
seconds = number(0, 24 * 3600, low_open=True)
frame_index = number(0, integer=True)
