"""One memory budget for every load: the size a file declares is checked before anything is allocated.

Uploads bound bytes, not memory (a 2 KB COCO json can declare 300 x 3000 x 3333 masks), so every loader computes
what it is about to allocate from what the file declares and calls `Budget.check`, which refuses past the limits
with a message that says the size and the limit. The defaults fit a 60 s studio video on a 24 GiB machine; the
CLIs set them with `--max-frames`, `--max-pixels` and `--max-memory-gb` (`add_budget_arguments`).
"""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

# 60 s at 60 fps: a minute of phone footage at its own rate (at the model's 8 fps: 7.5 minutes).
DEFAULT_MAX_FRAMES = 3600
# Pixels in one frame, source or output: 8K UHD (7680x4320) fits, 9000x9000 does not.
DEFAULT_MAX_PIXELS = 8192 * 8192
# Bytes one load may allocate: a twelfth of 24 GiB, since a studio session holds its video, masks, edit previews and
# a model at once, beside other sessions. A 60 s studio video at the working size (480x720, 8 fps) is 0.5 GiB of
# frames, its masks 0.16 GiB an object; a 60 s 720p source at 30 fps (4.6 GiB) is read at the working size instead.
DEFAULT_MAX_BYTES = 2 * 1024**3


class BudgetError(ValueError):
    """A load would be larger than the budget; the message says the size, the limit and how to get under it."""


def format_bytes(n: float) -> str:
    """`n` bytes as a short human figure (1.9 KiB, 4.6 GiB, 1.92 TiB)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _declared(value: object, name: str, what: str, error: type[Exception]) -> int:
    """A declared count as a non-negative int; NaN, inf, negatives, fractions and non-numbers are refused."""
    if isinstance(value, bool):
        raise error(f"{what} declares {name} {value!r}; expected a whole number")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise error(f"{what} declares {name} {str(value)[:40]!r}; expected a whole number") from None
    if not math.isfinite(number) or number < 0 or number != int(number):
        raise error(f"{what} declares {name} {value!r}; expected a whole number >= 0")
    return int(number) if not isinstance(value, int) else value


@dataclass(frozen=True)
class Budget:
    """Limits of one load: frames, pixels in one frame, and bytes of the arrays it allocates."""

    max_frames: int = DEFAULT_MAX_FRAMES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        for name in ("max_frames", "max_pixels", "max_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BudgetError(f"Budget.{name} must be a whole number >= 1, got {value!r}")

    def check(
        self,
        what: str,
        *,
        frames: object,
        height: object,
        width: object,
        count: object = 1,
        itemsize: int = 1,
        hint: str = "",
        error: type[Exception] = BudgetError,
    ) -> int:
        """Refuse `count` x `frames` x `height` x `width` items of `itemsize` bytes past the budget; return the bytes.

        `what` names the input ("masks.json", "decoding clip.mp4 at 720x480"); `hint` says how to get under the
        limit; `error` is the exception class raised (the caller's own, so its handlers still apply).
        """
        t = _declared(frames, "frames", what, error)
        h = _declared(height, "height", what, error)
        w = _declared(width, "width", what, error)
        k = _declared(count, "objects", what, error)
        tail = f"; {hint}" if hint else ""
        if t > self.max_frames:
            raise error(f"{what} declares {t} frames, over the limit of {self.max_frames} frames (--max-frames){tail}")
        if h * w > self.max_pixels:
            raise error(
                f"{what} declares frames of {w}x{h} ({h * w} pixels), over the limit of {self.max_pixels} pixels a "
                f"frame (--max-pixels){tail}"
            )
        nbytes = k * t * h * w * int(itemsize)
        if nbytes > self.max_bytes:
            objects = f"{k} objects x " if k != 1 else ""
            raise error(
                f"{what} needs {format_bytes(nbytes)} ({objects}{t} frames of {w}x{h}), over the memory limit of "
                f"{format_bytes(self.max_bytes)} (--max-memory-gb){tail}"
            )
        return nbytes

    def check_bytes(self, what: str, nbytes: int, hint: str = "", error: type[Exception] = BudgetError) -> int:
        """Refuse an allocation of `nbytes` past `max_bytes` (for arrays that are not frames x height x width)."""
        if nbytes > self.max_bytes:
            tail = f"; {hint}" if hint else ""
            raise error(
                f"{what} needs {format_bytes(nbytes)}, over the memory limit of {format_bytes(self.max_bytes)} "
                f"(--max-memory-gb){tail}"
            )
        return int(nbytes)

    def check_frames(self, what: str, frames: object, hint: str = "", error: type[Exception] = BudgetError) -> int:
        """Refuse a frame count past `max_frames` (retiming, resampling, long-video lengths) before allocating."""
        t = _declared(frames, "frames", what, error)
        if t > self.max_frames:
            tail = f"; {hint}" if hint else ""
            raise error(
                f"{what} would make {t} frames, over the limit of {self.max_frames} frames (--max-frames){tail}"
            )
        return t


_default = Budget()


def default_budget() -> Budget:
    """The budget loaders use when none is passed (set by the CLIs and the studio from their flags)."""
    return _default


def set_default_budget(budget: Budget) -> Budget:
    """Make `budget` the process-wide default; returns the previous one."""
    global _default
    if not isinstance(budget, Budget):
        raise BudgetError(f"set_default_budget needs a Budget, got {type(budget).__name__}")
    previous, _default = _default, budget
    return previous


@contextlib.contextmanager
def use_budget(budget: Budget) -> Iterator[Budget]:
    """Within the block, loaders default to `budget`."""
    previous = set_default_budget(budget)
    try:
        yield budget
    finally:
        set_default_budget(previous)


def resolve(budget: Budget | None) -> Budget:
    """`budget`, or the process-wide default when None."""
    return _default if budget is None else budget


# -- command-line flags ------------------------------------------------------------------------------------------


def _whole(text: str, flag: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{flag} must be a whole number, got {text!r}") from None
    if not math.isfinite(value) or value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"{flag} must be a whole number >= 1, got {text!r}")
    return int(value)


def _pixels(text: str) -> int:
    """A pixel count, as a number (67108864) or a size (8192x8192)."""
    if "x" in text.lower():
        parts = text.lower().split("x")
        if len(parts) != 2:
            raise argparse.ArgumentTypeError(f"--max-pixels must be a number or WIDTHxHEIGHT, got {text!r}")
        return _whole(parts[0], "--max-pixels width") * _whole(parts[1], "--max-pixels height")
    return _whole(text, "--max-pixels")


def _memory_gb(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--max-memory-gb must be a number of GiB, got {text!r}") from None
    if not math.isfinite(value) or not 0.001 <= value <= 1024**2:
        raise argparse.ArgumentTypeError(f"--max-memory-gb must be between 0.001 and 1048576 GiB, got {text!r}")
    return int(value * 1024**3)


def add_budget_arguments(parser: argparse.ArgumentParser) -> None:
    """The budget flags every CLI shares; read them back with `budget_from_args`."""
    group = parser.add_argument_group("memory budget (files declaring more are refused before loading)")
    group.add_argument(
        "--max-frames",
        type=lambda s: _whole(s, "--max-frames"),
        default=DEFAULT_MAX_FRAMES,
        help=f"most frames one video or mask load may hold (default {DEFAULT_MAX_FRAMES})",
    )
    group.add_argument(
        "--max-pixels",
        type=_pixels,
        default=DEFAULT_MAX_PIXELS,
        help="most pixels in one frame, as a number or WIDTHxHEIGHT (default 8192x8192)",
    )
    group.add_argument(
        "--max-memory-gb",
        type=_memory_gb,
        default=DEFAULT_MAX_BYTES,
        dest="max_memory",
        help=f"most GiB one load may allocate (default {DEFAULT_MAX_BYTES / 1024**3:g})",
    )


def budget_from_args(args: argparse.Namespace) -> Budget:
    """The budget the flags of `add_budget_arguments` describe."""
    return replace(Budget(), max_frames=args.max_frames, max_pixels=args.max_pixels, max_bytes=args.max_memory)
