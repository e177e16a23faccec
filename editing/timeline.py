"""Timeline edits of mask sequences: trim, speed, reverse, loop, ping-pong, concatenate, retime.

Each edit is computed on frame indices (`*_indices` functions, int [N] into the input) so that a chain of edits
gathers the masks once; the array functions below are the same edits applied to bool [T, H, W] masks.
"""

from __future__ import annotations

import numpy as np

from editing.transforms import EditError

RETIME_MODES = ("stretch", "loop", "pingpong")


def _check_positive(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) or value <= 0:
        raise EditError(f"{what} must be a positive number, got {value!r}")
    return float(value)


def _check_count(n: int) -> int:
    if n < 1:
        raise EditError("a timeline edit left no frames; a mask sequence needs at least one")
    return n


def resample_indices(num_src: int, src_fps: float, dst_fps: float, speed: float = 1.0) -> np.ndarray:
    """Indices that play `num_src` frames at `speed` x, sampled at `dst_fps`: frame j shows source time
    j * speed / dst_fps (sample-and-hold, as `mvideo_core.video_io.resample_indices`); covers the source once."""
    src_fps, dst_fps = _check_positive(src_fps, "source fps"), _check_positive(dst_fps, "target fps")
    speed = _check_positive(speed, "speed")
    duration = num_src / src_fps / speed  # seconds the played clip lasts
    n = _check_count(max(1, int(np.ceil(duration * dst_fps - 1e-6))))
    idx = np.floor(np.arange(n) * speed * src_fps / dst_fps + 1e-6).astype(np.int64)
    return np.minimum(idx, num_src - 1)


def trim_indices(num: int, fps: float, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """Keep frames whose time i / fps lies in [start, end) seconds."""
    if start >= num / fps:
        raise EditError(f"trim from {start} s keeps no frame of a {num / fps:.3g} s sequence; start earlier")
    end = num / fps if end is None else end
    if start < 0 or end <= start:
        raise EditError(f"trim needs 0 <= start < end, got start={start}, end={end}")
    i0, i1 = int(np.ceil(start * fps - 1e-6)), min(num, int(np.ceil(end * fps - 1e-6)))
    if i0 >= num or i1 <= i0:
        raise EditError(
            f"trim [{start}, {end}) s keeps no frame of a {num / fps:.3g} s sequence; choose times inside it"
        )
    return np.arange(i0, i1)


def loop_indices(num: int, times: int | None = None, num_frames: int | None = None) -> np.ndarray:
    """Repeat the sequence `times` times, or cyclically up to exactly `num_frames` frames."""
    if (times is None) == (num_frames is None):
        raise EditError("loop needs exactly one of 'times' (repeat count) or 'num_frames' (total length)")
    total = num * times if times is not None else num_frames
    return np.arange(_check_count(int(total))) % num


def pingpong_indices(num: int, times: int | None = None, num_frames: int | None = None) -> np.ndarray:
    """Forward then backward (end frames not doubled), repeated `times` times or up to `num_frames` frames."""
    if (times is None) == (num_frames is None):
        raise EditError("pingpong needs exactly one of 'times' (round trips) or 'num_frames' (total length)")
    cycle = np.concatenate([np.arange(num), np.arange(num - 2, 0, -1)]) if num > 1 else np.zeros(1, np.int64)
    total = len(cycle) * times if times is not None else num_frames
    return cycle[np.arange(_check_count(int(total))) % len(cycle)]


def retime_indices(num: int, fps: float, duration: float, mode: str = "stretch") -> np.ndarray:
    """Fit the sequence to `duration` seconds at the same fps: stretch (change speed), loop, or ping-pong."""
    duration = _check_positive(duration, "retime duration")
    n = _check_count(int(round(duration * fps)))
    if mode == "stretch":
        return np.minimum(np.floor(np.arange(n) * num / n + 1e-6).astype(np.int64), num - 1)
    if mode == "loop":
        return loop_indices(num, num_frames=n)
    if mode == "pingpong":
        return pingpong_indices(num, num_frames=n)
    raise EditError(f"retime mode must be one of {list(RETIME_MODES)}, got {mode!r}")


# -- the same edits on masks [T, H, W] -------------------------------------------------------------------------------
def trim(masks: np.ndarray, fps: float, start: float = 0.0, end: float | None = None) -> np.ndarray:
    return masks[trim_indices(len(masks), fps, start, end)]


def change_speed(masks: np.ndarray, fps: float, speed: float) -> np.ndarray:
    """Play `speed` x faster (2 = half as many frames) at the same fps."""
    return masks[resample_indices(len(masks), fps, fps, speed)]


def reverse(masks: np.ndarray) -> np.ndarray:
    return masks[::-1].copy()


def loop(masks: np.ndarray, times: int | None = None, num_frames: int | None = None) -> np.ndarray:
    return masks[loop_indices(len(masks), times, num_frames)]


def pingpong(masks: np.ndarray, times: int | None = None, num_frames: int | None = None) -> np.ndarray:
    return masks[pingpong_indices(len(masks), times, num_frames)]


def concatenate(sequences: list[np.ndarray]) -> np.ndarray:
    """Play sequences one after another; all must share [H, W] (resize them to the target first)."""
    if not sequences:
        raise EditError("concatenate needs at least one sequence")
    sizes = {s.shape[1:] for s in sequences}
    if len(sizes) != 1:
        raise EditError(f"concatenated sequences must share [H, W], got {sorted(sizes)}; resize them first")
    return np.concatenate(sequences)


def retime(masks: np.ndarray, fps: float, duration: float, mode: str = "stretch") -> np.ndarray:
    """E.g. a 4 s motion stretched (slowed) or looped to 16 s."""
    return masks[retime_indices(len(masks), fps, duration, mode)]
