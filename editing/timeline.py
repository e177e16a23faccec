"""Timeline edits of mask sequences: trim, speed, reverse, loop, ping-pong, concatenate, retime.

Each edit is computed on frame indices (`*_indices` functions, int [N] into the input) so that a chain of edits
gathers the masks once; the array functions below are the same edits applied to bool [T, H, W] masks.
"""

from __future__ import annotations

import numpy as np

from editing.transforms import EditError

RETIME_MODES = ("stretch", "loop", "pingpong")
MAX_TIMELINE_FRAMES = 1_000_000  # frames one edited sequence may hold (an hour at 240 fps); its indices take 8 MB


def _check_positive(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) or value <= 0:
        raise EditError(f"{what} must be a positive number, got {value!r}")
    return float(value)


def check_length(n: float, what: str) -> int:
    """`n` frames as an int, refused before anything is allocated when it is over MAX_TIMELINE_FRAMES or < 1."""
    if not n >= 1:
        raise EditError("a timeline edit left no frames; a mask sequence needs at least one")
    if n > MAX_TIMELINE_FRAMES:
        raise EditError(
            f"{what} would make {n:.4g} frames, over the limit of {MAX_TIMELINE_FRAMES:,} frames for one sequence; "
            "use a speed closer to 1, fewer repeats or a shorter duration"
        )
    return int(n)


def resample_indices(num_src: int, src_fps: float, dst_fps: float, speed: float = 1.0) -> np.ndarray:
    """Indices that play `num_src` frames at `speed` x, sampled at `dst_fps`: frame j shows source time
    j * speed / dst_fps (sample-and-hold, as `mvideo_core.video_io.resample_indices`); covers the source once."""
    src_fps, dst_fps = _check_positive(src_fps, "source fps"), _check_positive(dst_fps, "target fps")
    speed = _check_positive(speed, "speed")
    duration = num_src / src_fps / speed  # seconds the played clip lasts
    n = check_length(max(1.0, np.ceil(duration * dst_fps - 1e-6)), f"playing {num_src} frames at speed {speed:g}")
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
    return np.arange(check_length(total, "loop")) % num


def pingpong_indices(num: int, times: int | None = None, num_frames: int | None = None) -> np.ndarray:
    """Forward then backward (end frames not doubled), repeated `times` times or up to `num_frames` frames."""
    if (times is None) == (num_frames is None):
        raise EditError("pingpong needs exactly one of 'times' (round trips) or 'num_frames' (total length)")
    cycle_len = max(2 * num - 2, 1)
    total = check_length(cycle_len * times if times is not None else num_frames, "pingpong")
    cycle = np.concatenate([np.arange(num), np.arange(num - 2, 0, -1)]) if num > 1 else np.zeros(1, np.int64)
    return cycle[np.arange(total) % len(cycle)]


def retime_indices(num: int, fps: float, duration: float, mode: str = "stretch") -> np.ndarray:
    """Fit the sequence to `duration` seconds at the same fps: stretch (change speed), loop, or ping-pong.

    A duration d at f fps is round(d * f) + 1 frames, as clips are counted (4 s at 8 fps = 33 frames, the first
    at 0 s and the last at 4 s); "stretch" maps the first frame to the first and the last to the last."""
    duration = _check_positive(duration, "retime duration")
    if mode not in RETIME_MODES:
        raise EditError(f"retime mode must be one of {list(RETIME_MODES)}, got {mode!r}")
    n = check_length(round(duration * fps) + 1, f"retime to {duration:g} s")
    if mode == "stretch":
        step = (num - 1) / (n - 1) if n > 1 else 0.0
        return np.minimum(np.floor(np.arange(n) * step + 1e-6).astype(np.int64), num - 1)
    if mode == "loop":
        return loop_indices(num, num_frames=n)
    return pingpong_indices(num, num_frames=n)


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
