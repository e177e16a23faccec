"""The Python API of mask extraction: choose engines (with fallback), then video + text/boxes/clicks -> `MaskSet`.

`extract_masks` is what the CLI (`python -m mvideo_core.extract`) runs; the studio drives the `Tracker` session
directly for interactive refinement.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from mvideo_core.extraction.base import (
    CancelToken,
    Detections,
    ExtractionError,
    ProgressCallback,
    Tracker,
    check_frames,
)
from mvideo_core.extraction.classic import ClassicTracker
from mvideo_core.extraction.discovery import GROUNDING_DINO_IDS, SAM2_IDS, WeightsNotFound, find_checkpoint
from mvideo_core.extraction.grounding import GroundingDinoDetector, GroundingSettings, parse_phrases
from mvideo_core.masks import MaskSet

logger = logging.getLogger(__name__)

TRACKER_CHOICES = ("auto", "sam2", "classic")
BACKENDS = ("transformers", "sam2-package")


# -- engines ---------------------------------------------------------------------------------------------------
def load_tracker(
    tracker: str | None = "auto",
    *,
    sam2: str | os.PathLike | None = None,
    models_dir: str | os.PathLike | None = None,
    device: str | None = None,
    backend: str = "transformers",
    on_fallback: Callable[[str], None] | None = None,
) -> Tracker:
    """The tracker to use: 'classic', 'sam2' (weights required), or 'auto' (SAM2 if its weights are found, else the
    classic tracker, saying why). `tracker` may also be a SAM2 folder / hub id / Meta `.pt` file directly."""
    tracker = tracker or "auto"
    if backend not in BACKENDS:
        raise ExtractionError(f"unknown SAM2 backend {backend!r}; use one of {BACKENDS}")
    if tracker not in TRACKER_CHOICES:  # a checkpoint given in place of the name
        sam2, tracker = tracker, "sam2"
    if tracker == "classic":
        return ClassicTracker()
    if sam2 is not None and (backend == "sam2-package" or str(sam2).endswith(".pt")):
        from mvideo_core.extraction.sam2_pkg_tracker import Sam2PackageTracker

        return Sam2PackageTracker(sam2, device=device)
    try:
        found = find_checkpoint(sam2, SAM2_IDS, models_dir, what="SAM2 weights", flag="--sam2")
    except WeightsNotFound as err:
        if tracker == "sam2" or sam2 is not None:  # asked for explicitly: say what is wrong with it
            raise
        message = f"{err}; using the weight-free classic tracker (GrabCut + optical flow) instead"
        logger.warning(message)
        if on_fallback is not None:
            on_fallback(message)
        fallback = ClassicTracker()
        fallback.status = message
        return fallback
    from mvideo_core.extraction.sam2_tracker import Sam2Tracker

    logger.info("SAM2 weights: %s (%s)", found.path, found.how)
    return Sam2Tracker(found.path, device=device)


def load_grounder(
    grounding_dino: str | os.PathLike | None = None,
    *,
    models_dir: str | os.PathLike | None = None,
    device: str | None = None,
    settings: GroundingSettings | None = None,
    tiny_random: bool = False,
) -> GroundingDinoDetector:
    """Grounding DINO from a folder / hub id / the models dir / the HF cache. `tiny_random` builds a tiny random one
    (demo and tests: it runs, but finds nothing meaningful). Missing weights raise `WeightsNotFound`."""
    if tiny_random:
        import tempfile

        from mvideo_core.extraction.grounding import save_random_grounding_dino

        folder = save_random_grounding_dino(tempfile.mkdtemp(prefix="tiny-grounding-dino-"))
        grounder = GroundingDinoDetector(folder, settings, device=device)
        grounder.description = "tiny random Grounding DINO (demo only: its boxes are meaningless)"
        return grounder
    found = find_checkpoint(
        grounding_dino, GROUNDING_DINO_IDS, models_dir, what="Grounding DINO weights", flag="--grounding-dino"
    )
    return GroundingDinoDetector(found.path, settings, device=device)


# -- prompts ---------------------------------------------------------------------------------------------------
_NUM = r"-?\d+(?:\.\d+)?"
_BOX_RE = re.compile(
    rf"^\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*(?:@\s*(\d+))?\s*(?::\s*(\d+))?\s*$"
)
_CLICK_RE = re.compile(
    rf"^\s*({_NUM})\s*,\s*({_NUM})\s*(?:,\s*([+-]|pos|neg|1|0))?\s*(?:@\s*(\d+))?\s*(?::\s*(\d+))?\s*$"
)


@dataclass
class BoxPrompt:
    """A box (x0, y0, x1, y1 pixels) on `frame`, for object `obj_id` (a new one when None)."""

    box: tuple[float, float, float, float]
    frame: int = 0
    obj_id: int | None = None
    name: str | None = None


@dataclass
class ClickPrompt:
    """A click (x, y pixels), positive or negative, on `frame` for object `obj_id` (when None: the object of the
    prompt given just before it, or object 1)."""

    x: float
    y: float
    positive: bool = True
    frame: int = 0
    obj_id: int | None = None


def parse_box(text: str) -> BoxPrompt:
    """`"x0,y0,x1,y1@frame"` (frame defaults to 0; `:id` picks the object) -> `BoxPrompt`."""
    m = _BOX_RE.match(str(text))
    if not m:
        raise ExtractionError(f"cannot read the box {text!r}; write it as x0,y0,x1,y1@frame, e.g. 10,20,200,300@0")
    x0, y0, x1, y1 = (float(v) for v in m.group(1, 2, 3, 4))
    return BoxPrompt((x0, y0, x1, y1), int(m.group(5) or 0), int(m.group(6)) if m.group(6) else None)


def parse_click(text: str) -> ClickPrompt:
    """`"x,y,+@frame"` or `"x,y,-@frame"` (sign defaults to +, frame to 0; `:id` picks the object) -> `ClickPrompt`."""
    m = _CLICK_RE.match(str(text))
    if not m:
        raise ExtractionError(
            f"cannot read the click {text!r}; write it as x,y,+@frame (positive) or x,y,-@frame (negative)"
        )
    sign = m.group(3) or "+"
    return ClickPrompt(
        float(m.group(1)),
        float(m.group(2)),
        sign in ("+", "pos", "1"),
        int(m.group(4) or 0),
        int(m.group(5)) if m.group(5) else None,
    )


def _prompt(value, kind: type, parse, what: str, example: str):
    """A prompt as given to the API: the CLI's text form or the dataclass itself; anything else is refused."""
    if isinstance(value, str):
        return parse(value)
    if isinstance(value, kind):
        return value
    raise ExtractionError(f"a {what} must be text like {example} or a {kind.__name__}, got {type(value).__name__}")


# -- extraction ------------------------------------------------------------------------------------------------
@dataclass
class ExtractionResult:
    """Masks at the video's resolution, the detections used, and messages for the user (fallbacks, misses)."""

    masks: MaskSet
    detections: list[Detections] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def _downscale(frames: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """frames uint8 [T, H, W, 3] -> at most `max_side` on the longer side (area filter); returns (frames, scale)."""
    h, w = frames.shape[1:3]
    if not max_side or max(h, w) <= max_side:
        return frames, 1.0
    scale = max_side / max(h, w)
    size = (max(2, round(w * scale)), max(2, round(h * scale)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]), scale


def _upscale_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """bool [K, T, h, w] -> bool [K, T, H, W] (bilinear on 0/255, threshold at half: smooth edges)."""
    h, w = size
    out = np.zeros((*masks.shape[:2], h, w), bool)
    for k in range(masks.shape[0]):
        for t in range(masks.shape[1]):
            if masks[k, t].any():
                up = cv2.resize(masks[k, t].astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_LINEAR)
                out[k, t] = up > 127
    return out


def extract_masks(
    video,
    fps: float | None = None,
    *,
    text: str | Sequence[str] | None = None,
    text_frames: int | Sequence[int] = 0,
    boxes: Sequence[BoxPrompt | str] = (),
    clicks: Sequence[ClickPrompt | str] = (),
    tracker: Tracker | None = None,
    grounder: GroundingDinoDetector | None = None,
    track_max_side: int | None = 1280,
    mask_size: tuple[int, int] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | threading.Event | Callable[[], bool] | None = None,
    show_progress: bool = True,
) -> ExtractionResult:
    """Segment and track objects through a video.

    `video`: a `Video`, frames uint8 [T, H, W, 3] (with `fps`), or a file path. Objects come from `text` (one per
    phrase, the best box on each of `text_frames`), `boxes` and `clicks` (strings as on the CLI are accepted).
    Frames larger than `track_max_side` are tracked downscaled; masks come back at the video's full size, or at
    `mask_size` (h, w) when the frames were decoded smaller than the video (the CLI decodes at the tracker's working
    size): boxes and clicks are then in `mask_size` pixels. Raises `ExtractionError` with advice when nothing can be
    segmented, `ExtractionCancelled` (with partial masks) on cancel.
    """
    # 1. Check inputs
    if isinstance(video, str | os.PathLike):
        from mvideo_core.video_io import read_video

        video = read_video(video, fps=fps)
    if hasattr(video, "frames"):
        frames, fps = video.frames, fps or video.fps
    else:
        frames = video
    frames, fps = check_frames(frames, fps if fps is not None else 8.0)
    t = frames.shape[0]
    h, w = mask_size or frames.shape[1:3]  # the size prompts are given in and masks come back at
    frame_scale = frames.shape[2] / w  # frames decoded smaller than the video: < 1
    boxes = [_prompt(b, BoxPrompt, parse_box, "box", "'10,20,200,300@0'") for b in boxes]
    clicks = [_prompt(c, ClickPrompt, parse_click, "click", "'120,80,+@0'") for c in clicks]
    phrases = parse_phrases(text) if text is not None else []
    frames_for_text = [text_frames] if isinstance(text_frames, int | np.integer) else list(text_frames)
    if phrases and grounder is None:
        raise ExtractionError(
            "a text query needs Grounding DINO weights, which were not found; pass --grounding-dino PATH_OR_ID or "
            "--models-dir DIR (e.g. a download of IDEA-Research/grounding-dino-tiny), or give --box / --click instead"
        )
    for f in frames_for_text if phrases else []:
        if not 0 <= f < t:
            raise ExtractionError(f"text frame {f} is outside the video, which has frames 0..{t - 1}")
    if not phrases and not boxes and not clicks:
        raise ExtractionError(
            "nothing to segment: give a text query, a box (x0,y0,x1,y1@frame) or a click (x,y,+@frame)"
        )
    tracker = tracker or ClassicTracker()
    messages: list[str] = []
    if getattr(tracker, "status", None):
        messages.append(tracker.status)

    # 2. Ground text phrases on the requested frames (full resolution boxes)
    detections: list[Detections] = []
    prompts: list[tuple[int, int, np.ndarray | None, np.ndarray | None, np.ndarray | None, str | None]] = []
    next_id = 1
    id_of_phrase: dict[str, int] = {}  # the same phrase on several frames refines one object
    for f in frames_for_text if phrases else []:
        found = grounder.detect(frames[f], phrases, frame_idx=f).best_per_label()
        found.boxes /= frame_scale  # in video pixels, like boxes and clicks
        detections.append(found)
        for phrase in phrases:
            if phrase not in found.labels:
                messages.append(
                    f"no {phrase!r} found on frame {f} (box threshold {grounder.settings.box_threshold}); try "
                    "another frame (--text-frame), a lower --box-threshold, or a --box"
                )
        for box, label in zip(found.boxes, found.labels):
            if label not in id_of_phrase:
                id_of_phrase[label] = next_id
                next_id += 1
            prompts.append((id_of_phrase[label], f, box, None, None, label))
    for b in boxes:
        obj_id = b.obj_id or next_id
        next_id = max(next_id, obj_id + 1)
        prompts.append((obj_id, b.frame, np.asarray(b.box, np.float32), None, None, b.name))
    for c in clicks:
        obj_id = c.obj_id or (prompts[-1][0] if prompts else 1)
        prompts.append((obj_id, c.frame, None, np.array([[c.x, c.y]], np.float32), np.array([int(c.positive)]), None))
    if not prompts:
        raise ExtractionError(" ; ".join(messages) or "no object to track")

    # 3. Track (downscaled when the video is large), then bring masks back to full size
    small, scale = _downscale(frames, track_max_side)
    scale *= frame_scale
    session = tracker.start(small, fps)
    for obj_id, f, box, points, labels, name in prompts:
        if not 0 <= f < t:
            raise ExtractionError(f"frame {f} is outside the video, which has frames 0..{t - 1}")
        _check_in_frame(box, points, w, h)
        tracker.add_prompt(
            session,
            obj_id,
            f,
            box=None if box is None else box * scale,
            points=None if points is None else points * scale,
            labels=labels,
            name=name,
        )
    result = tracker.propagate(session, progress=progress, cancel=cancel, show_progress=show_progress)
    if small.shape[1:3] != (h, w):
        meta = dict(result.meta, tracked_at=list(small.shape[1:3]))
        result = MaskSet(_upscale_masks(result.masks, (h, w)), fps, result.ids, result.names, meta)
    return ExtractionResult(result, detections, messages)


def _check_in_frame(box: np.ndarray | None, points: np.ndarray | None, w: int, h: int) -> None:
    """Clear errors on full-resolution coordinates (the tracker sees scaled ones)."""
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in box)
        if x1 <= x0 or y1 <= y0:
            raise ExtractionError(f"the box {[x0, y0, x1, y1]} has zero or negative area; give x0 < x1 and y0 < y1")
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            raise ExtractionError(f"the box {[x0, y0, x1, y1]} lies outside the {w}x{h} frame")
    if points is not None:
        for x, y in points:
            if not (0 <= x < w and 0 <= y < h):
                raise ExtractionError(f"the click ({x:g}, {y:g}) lies outside the {w}x{h} frame")
