"""Video decode / resample / resize / encode on PyAV.

Decoding streams: frames are picked by presentation timestamp for the target fps (so variable frame rate sources
come out evenly timed), rotated by the display matrix, and scaled by swscale as they are decoded, so a long 1080p
source is never held whole at full size. Audio is ignored. The pure functions (`resample_fps`, `trim`,
`resize_frames`, `resize_masks`) apply the same rules to arrays already in memory.

Frames are uint8 `[T, H, W, 3]` RGB everywhere past this module; sizes are `(height, width)`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np

from mvideo_core.budget import Budget, resolve
from mvideo_core.outputs import atomic_path

Fit = Literal["crop", "letterbox", "stretch"]
FITS = ("crop", "letterbox", "stretch")

# Tolerance in seconds when comparing timestamps (container time bases round to a tick).
_EPS = 1e-4
# Sizes are bounded by mvideo_core.budget: sources larger than `max_pixels` a frame are refused before decoding,
# read_video refuses an output past `max_frames` / `max_bytes` (pass size / max_side / fps / end, or raise them).
# A crop whose scaled source would be this many times the output's area is cut from the source before scaling
# (a 1x360 video cropped to 480x720 would otherwise be scaled to 259200x720 first).
_WINDOW_FIRST = 2
# Consecutive packets that fail to decode before decoding gives up on a corrupt stream.
_MAX_BAD_PACKETS = 64


class VideoError(ValueError):
    """A video input cannot be used; the message says what was wrong and what to do."""


class VideoDecodeWarning(UserWarning):
    """Decoding stopped early (corrupt or truncated stream); the frames before that point were kept."""


@dataclass
class VideoInfo:
    """What a file holds. `width`/`height` are the displayed size, after rotation."""

    path: str
    width: int
    height: int
    fps: float
    num_frames: int  # from the container when it says, else estimated from duration * fps
    duration: float  # seconds
    rotation: int  # counter-clockwise degrees applied for display (0, 90, 180, 270)
    codec: str
    container: str
    has_audio: bool


@dataclass
class Video:
    """Decoded frames uint8 `[T, H, W, 3]` RGB with their fps.

    `stopped_at` is set (seconds) when a corrupt or truncated stream ended decoding early; `warnings` says why.
    """

    frames: np.ndarray
    fps: float
    source: str | None = None
    stopped_at: float | None = None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.frames = check_frames(self.frames)
        self.fps = check_fps(self.fps)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


# -- checks ----------------------------------------------------------------------------------------------------


def check_frames(frames: np.ndarray, what: str = "frames") -> np.ndarray:
    """Validate uint8 `[T, H, W, 3]` RGB frames with T >= 1."""
    if not isinstance(frames, np.ndarray):
        raise VideoError(f"{what} must be a numpy array uint8 [T, H, W, 3], got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise VideoError(f"{what} must have shape [T, H, W, 3] (RGB), got {tuple(frames.shape)}")
    if frames.dtype != np.uint8:
        raise VideoError(f"{what} must be uint8 in 0..255, got {frames.dtype}; convert with (x * 255).astype(uint8)")
    if frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        raise VideoError(f"{what} are empty: shape {tuple(frames.shape)}")
    return frames


def check_fps(fps: float, what: str = "fps") -> float:
    """Validate a frame rate: a finite positive number."""
    try:
        fps = float(fps)
    except (TypeError, ValueError) as err:
        raise VideoError(f"{what} must be a number, got {fps!r}") from err
    if not math.isfinite(fps) or fps <= 0:
        raise VideoError(f"{what} must be a positive number, got {fps}")
    return fps


def _check_size(size: tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        h, w = size
        if not all(float(v) == int(v) for v in (h, w)):
            raise ValueError
        h, w = int(h), int(w)
    except (TypeError, ValueError, OverflowError):
        raise VideoError(f"size must be (height, width) in whole pixels, got {size!r}") from None
    if h <= 0 or w <= 0:
        raise VideoError(f"size must be positive (height, width), got {size!r}")
    return h, w


def _check_seconds(value: float | None, what: str, allow_none: bool = False) -> float | None:
    """A time in seconds: a finite number >= 0 (None where allowed)."""
    if value is None and allow_none:
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise VideoError(f"{what} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise VideoError(f"{what} must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def _check_range(start: float, end: float | None) -> tuple[float, float | None]:
    start = _check_seconds(start, "start")
    end = _check_seconds(end, "end", allow_none=True)
    if end is not None and end <= start:
        raise VideoError(f"need 0 <= start < end seconds, got start={start}, end={end}")
    return start, end


def _check_fit(fit: str) -> str:
    if fit not in FITS:
        raise VideoError(f"fit must be one of {FITS}, got {fit!r}")
    return fit


# -- geometry shared by the decoder and the pure resize functions ------------------------------------------------


@dataclass(frozen=True)
class _Geometry:
    scaled: tuple[int, int]  # (h, w) after scaling the source
    crop: tuple[int, int]  # (top, left) offset into the scaled image (crop), or 0
    pad: tuple[int, int]  # (top, left) offset of the scaled image in the output (letterbox), or 0
    out: tuple[int, int]
    letterbox: bool = False
    # (top, left, h, w) of the source to cut out and scale straight to `out`, when scaling the whole source first
    # would be far larger than the output (a thin source cropped to a wide frame); None: scale, then crop / pad
    window: tuple[int, int, int, int] | None = None


def _geometry(src: tuple[int, int], dst: tuple[int, int], fit: str) -> _Geometry:
    """Where a `src` (h, w) image goes in a `dst` (h, w) output for `fit`."""
    (sh, sw), (dh, dw) = src, dst
    if fit == "stretch":
        return _Geometry((dh, dw), (0, 0), (0, 0), dst)
    if fit == "crop":
        scale = max(dh / sh, dw / sw)
        h, w = max(dh, round(sh * scale)), max(dw, round(sw * scale))
        if h * w > _WINDOW_FIRST * dh * dw:
            wh, ww = min(sh, max(1, round(dh / scale))), min(sw, max(1, round(dw / scale)))
            return _Geometry(dst, (0, 0), (0, 0), dst, window=((sh - wh) // 2, (sw - ww) // 2, wh, ww))
        return _Geometry((h, w), ((h - dh) // 2, (w - dw) // 2), (0, 0), dst)
    scale = min(dh / sh, dw / sw)
    h, w = min(dh, max(1, round(sh * scale))), min(dw, max(1, round(sw * scale)))
    return _Geometry((h, w), (0, 0), ((dh - h) // 2, (dw - w) // 2), dst, letterbox=True)


def _place(image: np.ndarray, geo: _Geometry) -> np.ndarray:
    """Crop or pad an already scaled image (`[h, w, ...]`) into the output frame."""
    if image.shape[:2] == geo.out:
        return image
    (dh, dw), (top, left) = geo.out, geo.crop
    if not geo.letterbox:
        return np.ascontiguousarray(image[top : top + dh, left : left + dw])
    out = np.zeros((dh, dw, *image.shape[2:]), dtype=image.dtype)
    pt, pl = geo.pad
    out[pt : pt + image.shape[0], pl : pl + image.shape[1]] = image
    return out


def _check_max_side(max_side: int | None) -> int | None:
    if max_side is None:
        return None
    try:
        ok = float(max_side) == int(max_side) and int(max_side) > 0
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise VideoError(f"max_side must be a positive whole number of pixels, got {max_side!r}")
    return int(max_side)


def _max_side_size(src: tuple[int, int], max_side: int | None) -> tuple[int, int] | None:
    """The (h, w) that brings the longer side down to `max_side` (aspect kept), or None when already within."""
    max_side = _check_max_side(max_side)
    if max_side is None:
        return None
    h, w = src
    if max(h, w) <= max_side:
        return None
    scale = max_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


# -- pure functions on arrays ----------------------------------------------------------------------------------


def resample_indices(num_frames: int, src_fps: float, dst_fps: float, budget: Budget | None = None) -> np.ndarray:
    """Source index shown at each output time k / dst_fps (sample-and-hold), covering the source duration.

    The output length is checked against the budget's `max_frames` before anything is allocated.
    """
    src_fps, dst_fps = check_fps(src_fps, "src_fps"), check_fps(dst_fps, "dst_fps")
    wanted = num_frames * (dst_fps / src_fps)
    if not math.isfinite(wanted) or wanted > resolve(budget).max_frames:
        resolve(budget).check_frames(
            f"resampling {num_frames} frames from {src_fps:g} to {dst_fps:g} fps",
            math.ceil(wanted) if math.isfinite(wanted) else 10**30,
            hint="check the frame rates",
            error=VideoError,
        )
    count = max(1, math.ceil(wanted - 1e-6)) if num_frames else 0
    idx = np.floor(np.arange(count) * src_fps / dst_fps + 1e-6).astype(np.int64)
    return np.minimum(idx, num_frames - 1)


def resample_fps(frames: np.ndarray, src_fps: float, dst_fps: float, budget: Budget | None = None) -> np.ndarray:
    """Frames `[T, ...]` at `dst_fps`, each output time taking the source frame shown then (drop or repeat)."""
    if not isinstance(frames, np.ndarray) or frames.ndim < 1 or frames.shape[0] == 0:
        raise VideoError(f"resample_fps needs a non-empty array [T, ...], got {getattr(frames, 'shape', frames)!r}")
    idx = resample_indices(frames.shape[0], src_fps, dst_fps, budget)
    per_frame = int(np.prod(frames.shape[1:], dtype=np.int64)) * frames.itemsize
    resolve(budget).check_bytes(f"resampling to {dst_fps:g} fps", len(idx) * per_frame, error=VideoError)
    return frames[idx]


def trim(frames: np.ndarray, fps: float, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """Frames `[T, ...]` whose timestamp i / fps lies in [start, end) seconds."""
    fps = check_fps(fps)
    try:
        start, end = _check_range(start, end)
    except VideoError as err:
        raise VideoError(f"trim: {err}") from None
    first = math.ceil(start * fps - 1e-6)
    last = frames.shape[0] if end is None else min(frames.shape[0], math.ceil(end * fps - 1e-6))
    if last <= first:
        raise VideoError(
            f"trim [{start}, {end}) s keeps no frames of a {frames.shape[0] / fps:.3f} s clip; pick a range inside it"
        )
    return frames[first:last]


def _resize_image(image: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    return cv2.resize(image, (w, h), interpolation=interpolation)


def _fit_image(image: np.ndarray, geo: _Geometry, interpolation: int) -> np.ndarray:
    """One `[h, w, ...]` image through `geo`: cut the window and scale it, or scale and crop / pad."""
    if geo.window is not None:
        top, left, h, w = geo.window
        return _resize_image(np.ascontiguousarray(image[top : top + h, left : left + w]), geo.out, interpolation)
    scaled = _resize_image(image, geo.scaled, interpolation)
    return _place(scaled.reshape(*geo.scaled, *image.shape[2:]), geo)


def _check_output(what: str, count: int, size: tuple[int, int], channels: int, budget: Budget | None) -> None:
    """`count` images of `size` (h, w) x `channels` bytes within the budget's pixels a frame and bytes."""
    h, w = size
    hint = "resize to a smaller size"
    resolve(budget).check(
        what, frames=1, height=h, width=w, count=count, itemsize=channels, hint=hint, error=VideoError
    )


def resize_frames(
    frames: np.ndarray, size: tuple[int, int], fit: Fit = "crop", budget: Budget | None = None
) -> np.ndarray:
    """Frames `[T, H, W, C]` (or one `[H, W, C]`) resized to `size` (h, w): centre-crop, letterbox or stretch."""
    size, fit = _check_size(size), _check_fit(fit)
    if not isinstance(frames, np.ndarray) or frames.ndim not in (3, 4):
        raise VideoError(f"resize_frames needs [T, H, W, C] or [H, W, C], got {getattr(frames, 'shape', frames)!r}")
    if frames.ndim == 3:
        return resize_frames(frames[None], size, fit, budget)[0]
    _check_output(f"resizing {frames.shape[0]} frames", frames.shape[0], size, frames.shape[3], budget)
    geo = _geometry(frames.shape[1:3], size, fit)
    source = geo.window[2:] if geo.window is not None else frames.shape[1:3]
    scaled = geo.out if geo.window is not None else geo.scaled
    interp = cv2.INTER_AREA if scaled[0] * scaled[1] < source[0] * source[1] else cv2.INTER_LINEAR
    out = np.empty((frames.shape[0], *size, frames.shape[3]), dtype=frames.dtype)
    for t, frame in enumerate(frames):
        out[t] = _fit_image(frame, geo, interp).reshape(*size, frames.shape[3])
    return out


def resize_masks(
    masks: np.ndarray, size: tuple[int, int], fit: Fit = "crop", budget: Budget | None = None
) -> np.ndarray:
    """Bool masks `[..., H, W]` resized to `size` (h, w) with nearest neighbour and the same geometry as frames."""
    size, fit = _check_size(size), _check_fit(fit)
    if not isinstance(masks, np.ndarray) or masks.ndim < 2:
        raise VideoError(f"resize_masks needs bool [..., H, W], got {getattr(masks, 'shape', masks)!r}")
    if masks.dtype != bool:
        raise VideoError(f"resize_masks needs bool masks, got {masks.dtype}; threshold them first (masks > 0)")
    lead, (h, w) = masks.shape[:-2], masks.shape[-2:]
    flat = masks.reshape(-1, h, w).view(np.uint8)
    _check_output(f"resizing {flat.shape[0]} masks", flat.shape[0], size, 1, budget)
    geo = _geometry((h, w), size, fit)
    out = np.empty((flat.shape[0], *size), dtype=bool)
    for i, mask in enumerate(flat):
        out[i] = _fit_image(mask, geo, cv2.INTER_NEAREST).astype(bool)
    return out.reshape(*lead, *size)


# -- probing and decoding --------------------------------------------------------------------------------------


def _open(
    path: str | os.PathLike, budget: Budget | None = None
) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    path = Path(path)
    if not path.exists():
        raise VideoError(f"no such video file: {path}")
    if path.is_dir():
        raise VideoError(f"{path} is a folder, not a video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path} is empty (0 bytes); the upload or copy did not finish, try again")
    try:
        container = av.open(str(path), "r", metadata_errors="replace")  # a damaged tag must not hide the video
    except av.error.FFmpegError as err:
        raise VideoError(
            f"{path.name} is not a video FFmpeg can read ({err.strerror or err}); "
            "upload an mp4/mov/mkv/webm/avi/gif file, or convert it with `ffmpeg -i in out.mp4`"
        ) from err
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        container.close()
        raise VideoError(f"{path.name} has no video stream (found: {', '.join(kinds)}); it is not a video")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        container.close()
        raise VideoError(f"{path.name}: its video codec is unknown or damaged; convert it with `ffmpeg -i in out.mp4`")
    stream.thread_type = "AUTO"
    try:
        resolve(budget).check(
            path.name,
            frames=0,
            height=stream.height or 0,
            width=stream.width or 0,
            hint="downscale it first (e.g. `ffmpeg -i in -vf scale=-2:1080 out.mp4`)",
            error=VideoError,
        )
    except VideoError:
        container.close()
        raise
    return container, stream


def _nominal_fps(stream: av.video.stream.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and 0 < float(rate) < 1000:
            return float(rate)
    return 25.0


def _stream_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


def _rotation_of(frame: av.VideoFrame) -> int:
    try:
        rotation = frame.rotation
    except Exception:  # noqa: BLE001 - a malformed display matrix means "no rotation"
        return 0
    return int(round((rotation or 0) / 90.0)) * 90 % 360


def read_image(path: str | Path, budget: Budget | None = None) -> np.ndarray:
    """A picture file (PNG, JPEG, WebP, BMP, the first frame of a GIF) as uint8 RGB [H, W, 3]. The size its header
    declares is checked against the budget before the pixels are decoded; an unreadable, empty or cut file is one
    `VideoError` that names it and says what to do."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"no picture at {str(path)!r}; check the path")
    if path.stat().st_size == 0:
        raise VideoError(f"{path.name} is empty (0 bytes); choose a PNG or JPEG picture")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the budget below is the limit
            with Image.open(path) as image:
                width, height = image.size
                resolve(budget).check(
                    f"the picture {path.name}", frames=1, height=height, width=width, itemsize=4,
                    hint="use a smaller picture", error=VideoError,
                )  # fmt: skip
                return np.asarray(image.convert("RGB"))
    except VideoError:
        raise
    except Image.DecompressionBombError as err:
        raise VideoError(
            f"the picture {path.name} declares too many pixels to decode ({err}); use a smaller picture"
        ) from None
    except UnidentifiedImageError:
        raise VideoError(f"{path.name} is not a picture (PNG, JPEG, WebP, BMP or GIF); export it as PNG") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise VideoError(
            f"the picture {path.name} could not be decoded ({err}); it may be cut short: export it again"
        ) from None


def probe_video(path: str | os.PathLike, budget: Budget | None = None) -> VideoInfo:
    """Size, fps, frame count, duration, rotation and codec of a video file; decodes only its first frame."""
    container, stream = _open(path, budget)
    try:
        rotation = 0
        try:
            for frame in container.decode(stream):
                rotation = _rotation_of(frame)
                break
            else:
                raise VideoError(f"{Path(path).name} has a video stream but no frame decodes; it is empty or corrupt")
        except av.error.FFmpegError as err:
            raise VideoError(f"{Path(path).name}: no frame decodes ({err}); the file is corrupt") from err
        fps = _nominal_fps(stream)
        duration = _stream_duration(container, stream)
        num_frames = int(stream.frames or 0)
        if num_frames <= 0:
            num_frames = max(1, round((duration or 0.0) * fps))
        if duration is None:
            duration = num_frames / fps
        w, h = stream.codec_context.width, stream.codec_context.height
        if rotation in (90, 270):
            w, h = h, w
        return VideoInfo(
            path=str(path),
            width=int(w),
            height=int(h),
            fps=fps,
            num_frames=num_frames,
            duration=float(duration),
            rotation=rotation,
            codec=stream.codec_context.name,
            container=container.format.name,
            has_audio=bool(container.streams.audio),
        )
    finally:
        container.close()


class FrameIterator(Iterator[np.ndarray]):
    """Streams decoded frames uint8 `[H, W, 3]`; after exhaustion `stopped_at` / `error` tell whether it ended early.

    Frames are picked by timestamp: with `fps`, output time k / fps (from `start`) shows the last source frame
    whose pts is at or before it, so VFR sources come out evenly timed. Only the frames that are output get
    converted and scaled (swscale, one step), so memory stays at one output frame plus the decoder's own.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        fps: float | None = None,
        size: tuple[int, int] | None = None,
        fit: Fit = "crop",
        start: float = 0.0,
        end: float | None = None,
        max_side: int | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.path = str(path)
        self.fps = None if fps is None else check_fps(fps)
        self.size = _check_size(size)
        self.fit = _check_fit(fit)
        self.start, self.end = _check_range(start, end)
        self.max_side = _check_max_side(max_side)
        self.budget = resolve(budget)
        if self.size is not None:
            _check_output(f"decoding {Path(self.path).name}", 1, self.size, 3, self.budget)
        self.stopped_at: float | None = None  # seconds where a corrupt / truncated stream ended decoding
        self.error: str | None = None
        self.skipped_packets = 0  # packets that failed to decode and were skipped (errors concealed)
        self.num_output = 0
        self._opened = _open(self.path, self.budget)  # fail now, not at the first frame, on a file that is not a video
        self._gen = self._frames()

    def __iter__(self) -> FrameIterator:
        return self

    def __next__(self) -> np.ndarray:
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()
        self._opened[0].close()

    # one output frame: rotate + scale + place, done by swscale where possible
    def _convert(self, frame: av.VideoFrame) -> np.ndarray:
        rotation = _rotation_of(frame)
        coded = (frame.height, frame.width)
        display = coded if rotation in (0, 180) else coded[::-1]
        size = self.size or _max_side_size(display, self.max_side)
        if size is None:
            geo = _Geometry(display, (0, 0), (0, 0), display)
        else:
            geo = _geometry(display, size, self.fit)
        try:
            if geo.window is not None:  # a thin source cropped to a wide frame: cut the window, then scale it
                image = frame.to_ndarray(format="rgb24")
                if rotation:
                    image = np.rot90(image, k=rotation // 90)
                top, left, h, w = geo.window
                interpolation = cv2.INTER_AREA if h * w > geo.out[0] * geo.out[1] else cv2.INTER_LINEAR
                return _fit_image(image, geo, interpolation)
            sh, sw = geo.scaled if rotation in (0, 180) else geo.scaled[::-1]
            if (sh, sw) == coded:
                image = frame.to_ndarray(format="rgb24")
            else:
                interpolation = "AREA" if sh * sw < coded[0] * coded[1] else "BILINEAR"
                image = frame.reformat(width=sw, height=sh, format="rgb24", interpolation=interpolation).to_ndarray()
        except (av.error.FFmpegError, ValueError, cv2.error) as err:
            raise VideoError(
                f"{Path(self.path).name}: cannot convert a {coded[1]}x{coded[0]} frame to {geo.out[1]}x{geo.out[0]} "
                f"({err}); re-encode the video (`ffmpeg -i in -vf scale=-2:480 out.mp4`)"
            ) from None
        if rotation:
            image = np.rot90(image, k=rotation // 90)
        return np.ascontiguousarray(_place(image, geo))

    def _decoded(self, container, stream) -> Iterator[tuple[av.VideoFrame, float]]:
        """(frame, seconds since the stream start) in presentation order; stops on an unrecoverable error."""
        tb = stream.time_base
        t0 = float(stream.start_time * tb) if stream.start_time is not None and tb else None
        nominal = 1.0 / _nominal_fps(stream)
        last_t, bad = None, 0
        if self.start > 1.0 and tb and t0 is not None:
            try:  # jump near the start; the frames before it are decoded and dropped below
                container.seek(int(((t0 or 0.0) + self.start - 1.0) / tb), stream=stream, backward=True)
            except av.error.FFmpegError:
                container.seek(0)
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as err:
                self.error = f"demuxing failed: {err}"
                break
            try:
                frames = packet.decode()
                bad = 0
            except av.error.FFmpegError as err:
                bad += 1
                self.skipped_packets += 1
                if bad >= _MAX_BAD_PACKETS:
                    self.error = f"{bad} packets in a row failed to decode: {err}"
                    break
                continue
            for frame in frames:
                t = None if frame.pts is None or not tb else float(frame.pts * tb)
                if t is not None and t0 is None:
                    t0 = t
                t = None if t is None else t - t0
                if t is None or (last_t is not None and t <= last_t):  # missing / repeated pts: assume nominal rate
                    t = 0.0 if last_t is None else last_t + nominal
                last_t = t
                yield frame, t

    def _frames(self) -> Iterator[np.ndarray]:
        container, stream = self._opened
        try:
            duration = _stream_duration(container, stream)
            nominal = 1.0 / _nominal_fps(stream)
            step = None if self.fps is None else 1.0 / self.fps
            end = math.inf if self.end is None else self.end
            k = 0  # next output index (with fps): output time start + k * step
            prev: tuple[av.VideoFrame, float] | None = None
            last_t = None
            reached_end = False
            for frame, t in self._decoded(container, stream):
                last_t = t
                if step is None:
                    if t >= end - _EPS:
                        reached_end = True
                        break
                    if t >= self.start - _EPS:
                        self.num_output += 1
                        yield self._convert(frame)
                    continue
                # output times before this frame's pts show the previous frame (this one when there is none)
                while (target := self.start + k * step) < end - _EPS and target < t - _EPS:
                    k += 1
                    self.num_output += 1
                    yield self._convert(prev[0] if prev is not None else frame)
                if self.start + k * step >= end - _EPS:
                    reached_end = True
                    break
                prev = (frame, t)
            if not reached_end and step is not None and prev is not None:
                # end of stream: the last frame stays on screen for its duration
                frame, t = prev
                dur = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else nominal
                while self.start + k * step < min(end, t + (dur if dur > 0 else nominal)) - _EPS:
                    k += 1
                    self.num_output += 1
                    yield self._convert(frame)
            if not reached_end and last_t is not None and not self.error and duration:
                # the video stream's own duration is exact to a frame; a container's may include longer audio
                slack = 0.0 if stream.duration and stream.time_base else 0.5
                if last_t + 2 * nominal < min(duration, end) - slack:
                    self.error = f"the stream ended at {last_t:.2f} s but the container says {duration:.2f} s"
            if self.error and last_t is not None:
                self.stopped_at = last_t
            name = Path(self.path).name
            if self.num_output == 0:
                if last_t is None:
                    why = f" ({self.error})" if self.error else ""
                    raise VideoError(f"{name}: no frame could be decoded{why}; the file is empty or corrupt")
                raise VideoError(
                    f"{name}: no frames in [{self.start}, {self.end}) s; the video ends at {last_t:.2f} s, "
                    "pick a range inside it"
                )
            if self.stopped_at is not None:
                warnings.warn(
                    f"{name}: decoding stopped at {self.stopped_at:.2f} s ({self.error}); "
                    f"kept the {self.num_output} frames before it; re-export or re-upload the file to get the rest",
                    VideoDecodeWarning,
                    stacklevel=3,
                )
        finally:
            container.close()


def iter_frames(
    path: str | os.PathLike,
    *,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    fit: Fit = "crop",
    start: float = 0.0,
    end: float | None = None,
    max_side: int | None = None,
    budget: Budget | None = None,
) -> FrameIterator:
    """Stream frames uint8 `[H, W, 3]` RGB, resampled to `fps` by timestamp, resized to `size` (h, w) while decoding.

    `max_side` caps the longer side when no `size` is given. A truncated stream ends early with a
    `VideoDecodeWarning` and `stopped_at` set on the returned iterator; nothing decodable raises `VideoError`.
    """
    return FrameIterator(path, fps=fps, size=size, fit=fit, start=start, end=end, max_side=max_side, budget=budget)


def read_video(
    path: str | os.PathLike,
    *,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    fit: Fit = "crop",
    start: float = 0.0,
    end: float | None = None,
    max_seconds: float | None = None,
    max_side: int | None = None,
    max_bytes: int | None = None,
    budget: Budget | None = None,
) -> Video:
    """Decode `[start, end)` of a file into a `Video`, resampled and resized while decoding.

    Refuses, before decoding, a range longer than `max_seconds` or an output past the budget (frames, pixels a
    frame, bytes; `max_bytes` overrides the budget's bytes); a stream holding more than it declared stops there.
    """
    budget = resolve(budget)
    if max_bytes is not None:
        budget = replace(budget, max_bytes=int(max_bytes))
    start, end = _check_range(start, end)
    max_seconds = _check_seconds(max_seconds, "max_seconds", allow_none=True)
    fps = None if fps is None else check_fps(fps)
    name = Path(path).name
    info = probe_video(path, budget)
    span = max(0.0, (info.duration if end is None else min(end, info.duration)) - start)
    if max_seconds is not None and span > max_seconds + 1e-3:
        raise VideoError(
            f"{name} is {info.duration:.1f} s long ({span:.1f} s from start={start}), over the "
            f"{max_seconds:g} s limit; trim it (end=start+{max_seconds:g}) or raise the limit"
        )
    out_fps = fps or info.fps
    out_size = _check_size(size) or _max_side_size((info.height, info.width), max_side) or (info.height, info.width)
    what = f"decoding {name} at {out_size[1]}x{out_size[0]}, {out_fps:g} fps for {span:.1f} s"
    hint = "pass a smaller size / max_side / fps, a shorter start..end, or iterate with iter_frames()"
    declared = math.ceil(span * out_fps) if math.isfinite(span * out_fps) else 10**30
    budget.check(what, frames=declared, height=out_size[0], width=out_size[1], itemsize=3, hint=hint, error=VideoError)
    frames_iter = iter_frames(
        path, fps=fps, size=size, fit=fit, start=start, end=end, max_side=max_side, budget=budget
    )
    capacity = declared + 2
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", VideoDecodeWarning)
            frames, count = None, 0
            for frame in frames_iter:  # fill one preallocated array: peak memory is the output, not twice it
                if frames is None:
                    frames = np.empty((capacity, *frame.shape), dtype=np.uint8)
                elif count == frames.shape[0]:  # the stream holds more than it declared: grow within the budget
                    grow = max(8, count // 4)
                    budget.check(
                        f"{name} holds more frames than it declares ({count}+);",
                        frames=count + grow,
                        height=frame.shape[0],
                        width=frame.shape[1],
                        itemsize=3,
                        hint=hint,
                        error=VideoError,
                    )
                    frames = np.concatenate([frames, np.empty_like(frames[:grow])])
                if frame.shape != frames.shape[1:]:
                    raise VideoError(
                        f"{name} changes size mid-stream ({frames.shape[2]}x{frames.shape[1]} to {frame.shape[1]}x"
                        f"{frame.shape[0]} at frame {count}); pass size=(height, width) to read every frame at one size"
                    )
                frames[count] = frame
                count += 1
            frames = frames[:count] if count > 0.9 * frames.shape[0] else frames[:count].copy()
    except MemoryError:
        frames_iter.close()
        raise VideoError(f"{what} ran out of memory; {hint}") from None
    except VideoError:
        frames_iter.close()
        raise
    notes = [str(w.message) for w in caught if issubclass(w.category, VideoDecodeWarning)]
    for note in notes:
        warnings.warn(note, VideoDecodeWarning, stacklevel=2)
    return Video(frames, out_fps, str(path), stopped_at=frames_iter.stopped_at, warnings=notes)


def truncation_note(video: Video) -> str | None:
    """What to tell a user whose file decoded only in part (a truncated upload, a corrupt stream), or None.

    The CLIs print it as a warning; the studio shows it beside the loaded video, so a cut-off upload is never silent.
    """
    if video.stopped_at is None and not video.warnings:
        return None
    if video.warnings:
        return " ".join(video.warnings)
    name = Path(video.source).name if video.source else "the video"
    return (
        f"{name}: decoding stopped at {video.stopped_at:.2f} s; kept the {video.num_frames} frames before it; "
        "re-export or re-upload the file to get the rest"
    )


# -- encoding --------------------------------------------------------------------------------------------------


# Frame rates an encoded file may carry (players and muxers misbehave outside this).
_ENCODE_FPS = (0.01, 1000.0)


def _rate(fps: float) -> Fraction:
    fps = check_fps(fps)
    if not _ENCODE_FPS[0] <= fps <= _ENCODE_FPS[1]:
        raise VideoError(
            f"fps must be between {_ENCODE_FPS[0]:g} and {_ENCODE_FPS[1]:g} to encode a video, got {fps:g}"
        )
    return Fraction(fps).limit_denominator(1001)


def _pad_even(frames: np.ndarray) -> np.ndarray:
    """Pad bottom/right by one replicated row/column where H or W is odd (yuv420p needs even sizes)."""
    t, h, w, _ = frames.shape
    ph, pw = h % 2, w % 2
    if not (ph or pw):
        return frames
    return np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")


class _AudioCopy:
    """The first audio track of a source file, re-encoded as AAC into an output container (stream added up front)."""

    def __init__(self, container, source: str | os.PathLike, start: float) -> None:
        try:
            self.src = av.open(str(source), "r")
        except av.error.FFmpegError as err:
            raise VideoError(f"cannot read audio from {source}: {err}") from err
        self.container, self.start, self.out_stream = container, start, None
        if not self.src.streams.audio:
            self.src.close()
            return
        self.in_stream = self.src.streams.audio[0]
        self.rate = self.in_stream.codec_context.sample_rate or 44100
        self.layout = "mono" if self.in_stream.codec_context.channels == 1 else "stereo"
        self.out_stream = container.add_stream("aac", rate=self.rate)
        self.out_stream.layout = self.layout

    def write(self, duration: float) -> None:
        """Encode `duration` seconds from `start`."""
        if self.out_stream is None:
            return
        try:
            resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate)
            if self.start > 0:
                self.src.seek(int(self.start * 1_000_000))
            written, limit = 0, int(round(duration * self.rate))
            for frame in self.src.decode(self.in_stream):
                if frame.time is not None and frame.time + frame.samples / frame.sample_rate <= self.start:
                    continue
                for out in resampler.resample(frame):
                    n = min(out.samples, limit - written)
                    if n <= 0:
                        break
                    if n < out.samples:
                        arr = np.ascontiguousarray(out.to_ndarray()[:, :n])
                        out = av.AudioFrame.from_ndarray(arr, format="fltp", layout=self.layout)
                        out.sample_rate = self.rate
                    out.pts, out.time_base = written, Fraction(1, self.rate)
                    written += n
                    for packet in self.out_stream.encode(out):
                        self.container.mux(packet)
                if written >= limit:
                    break
            for packet in self.out_stream.encode(None):
                self.container.mux(packet)
        finally:
            self.src.close()


def _frames_to_encode(frames: np.ndarray | Iterable[np.ndarray]) -> tuple[Iterator[np.ndarray], tuple[int, int]]:
    """(frames uint8 [H, W, 3] padded to even sizes, (H, W)) from an array [T, H, W, 3] or any iterable of frames
    (encoded as they come: a long render never sits in memory whole)."""
    if isinstance(frames, np.ndarray):
        frames = _pad_even(check_frames(frames))
        return iter(frames), frames.shape[1:3]
    source = iter(frames)
    first = next(source, None)
    if not isinstance(first, np.ndarray):
        raise VideoError(
            "frames must be a numpy array uint8 [T, H, W, 3] or an iterable of [H, W, 3] numpy arrays, got "
            f"{type(frames).__name__} holding {type(first).__name__}"
        )
    first = _pad_even(check_frames(first[None]))[0]

    def padded() -> Iterator[np.ndarray]:
        yield first
        for i, image in enumerate(source, 1):
            if not isinstance(image, np.ndarray):
                raise VideoError(f"frame {i} is a {type(image).__name__}, not a numpy array uint8 [H, W, 3]")
            image = _pad_even(check_frames(image[None], what=f"frame {i}"))[0]
            if image.shape != first.shape:
                raise VideoError(f"frame {i} is {image.shape[:2]}, frame 0 {first.shape[:2]}: one size a video")
            yield image

    return padded(), first.shape[:2]


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float,
    *,
    crf: int = 18,
    audio_from: str | os.PathLike | None = None,
    audio_start: float = 0.0,
    preset: str = "medium",
    pix_fmt: str = "yuv420p",
) -> Path:
    """Encode frames uint8 `[T, H, W, 3]` (or an iterable of `[H, W, 3]`, encoded as it yields them) as H.264
    yuv420p mp4 (odd sizes padded to even), optionally with audio.

    `pix_fmt="yuv444p"` keeps full-resolution colour (no 2x2 chroma subsampling: exact edges for tiny frames and for
    measurement files; browsers may not play it).

    `audio_from` copies the first audio track of another file (re-encoded to AAC, from `audio_start`, cut to the
    video's length). The file is written with `+faststart` so browsers can play it while it loads.
    """
    if pix_fmt not in ("yuv420p", "yuv444p"):
        raise VideoError(f"pix_fmt must be 'yuv420p' (plays everywhere) or 'yuv444p' (full colour), got {pix_fmt!r}")
    images, (h, w) = _frames_to_encode(frames)
    rate = _rate(fps)
    if audio_from is not None and not Path(audio_from).is_file():
        raise VideoError(f"audio_from: no such file {audio_from}; pass the source video whose sound to copy")
    path = Path(path)
    count = 0
    try:
        with (
            atomic_path(path) as tmp,
            av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as container,
        ):
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
            stream.options = {"crf": str(int(crf)), "preset": preset}
            audio = _AudioCopy(container, audio_from, audio_start) if audio_from is not None else None
            for count, image in enumerate(images, 1):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = count - 1  # in the codec's time base, 1 / rate
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
            if audio is not None:
                audio.write(count / float(rate))
    except (av.error.FFmpegError, OSError) as err:
        raise VideoError(f"writing {path} failed: {getattr(err, 'strerror', None) or err}") from err
    return path


def write_clip(
    path: str | os.PathLike, frames: np.ndarray | Iterable[np.ndarray], fps: float, *, crf: int = 23
) -> Path:
    """Write a short clip fast (x264 `ultrafast`), for streaming each finished clip and for previews."""
    return write_video(path, frames, fps, crf=crf, preset="ultrafast")
