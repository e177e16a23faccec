"""Preview of edited masks: a coloured overlay on a chosen background (the source video or a plain canvas).

`preview_frame` renders one frame (for live scrubbing, a few ms at 480x720); `preview_video` renders all of them.
Objects are drawn bottom to top in the MaskSet's order, so the top layer's colour is in front.
"""

from __future__ import annotations

import cv2
import numpy as np

from editing.boxes import interpolate_boxes
from editing.path import check_points, path_positions
from editing.transforms import EditError
from mvideo_core.masks import MaskSet, render_overlay


def _background_frame(
    background: np.ndarray | None, index: int, masks: MaskSet, bg_fps: float | None, canvas: tuple[int, int, int]
) -> np.ndarray:
    """uint8 [H, W, 3] background for mask frame `index`: the video frame at the same time, resized, or a canvas."""
    h, w = masks.size
    if background is None:
        return _canvas(h, w, canvas)
    if not isinstance(background, np.ndarray) or background.dtype != np.uint8 or background.ndim not in (3, 4):
        raise EditError(
            "background must be uint8 RGB frames [T, H, W, 3] or one frame [H, W, 3], got "
            f"{getattr(background, 'dtype', type(background).__name__)} {getattr(background, 'shape', '')}"
        )
    if background.shape[-1] != 3:
        raise EditError(f"background must have 3 (RGB) channels, got shape {background.shape}")
    if background.ndim == 4:
        fps = masks.fps if bg_fps is None else bg_fps
        j = min(int(np.floor(index / masks.fps * fps + 1e-6)), len(background) - 1)
        frame = background[j]
    else:
        frame = background
    if frame.shape[:2] != (h, w):
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    return frame


def _canvas(h: int, w: int, color: tuple[int, int, int]) -> np.ndarray:
    out = np.empty((h, w, 3), dtype=np.uint8)
    out[:] = color
    return out


def preview_frame(
    masks: MaskSet,
    index: int,
    background: np.ndarray | None = None,
    *,
    alpha: float = 0.5,
    background_fps: float | None = None,
    canvas: tuple[int, int, int] = (24, 24, 24),
    labels: bool = True,
) -> np.ndarray:
    """uint8 [H, W, 3]: frame `index` of the masks tinted, outlined and named over the background, drawn by
    `mvideo_core.masks.render_overlay` so the editor looks like every other overlay in the studio."""
    if not 0 <= alpha <= 1:
        raise EditError(f"alpha must be in [0, 1], got {alpha}")
    if not 0 <= index < masks.num_frames:
        raise EditError(f"frame index {index} is outside 0..{masks.num_frames - 1}")
    frame = _background_frame(background, index, masks, background_fps, canvas)
    one = MaskSet(masks.masks[:, index : index + 1], masks.fps, list(masks.ids), list(masks.names))
    return render_overlay(frame[None], one, alpha=alpha, labels=labels)[0]


def preview_video(masks: MaskSet, background: np.ndarray | None = None, **kwargs) -> np.ndarray:
    """uint8 [T, H, W, 3]: every frame of `preview_frame`."""
    return np.stack([preview_frame(masks, i, background, **kwargs) for i in range(masks.num_frames)])


def draw_path(
    frame: np.ndarray,
    points: list[dict],
    *,
    smooth: bool = False,
    now: float | None = None,
    color: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """A copy of uint8 [H, W, 3] with a path drawn over it: the curve the anchor follows, each point with its time,
    and (at `now` seconds) where the anchor is."""
    out = frame.copy()
    if not points:
        return out
    kt, xy = check_points(points)
    curve = path_positions(points, np.linspace(kt[0], kt[-1], max(2, 8 * len(kt))), smooth)
    thick = max(1, round(min(out.shape[:2]) / 240))
    cv2.polylines(out, [np.round(curve).astype(np.int32)], False, color, thick, cv2.LINE_AA)
    for t, (x, y) in zip(kt, xy):
        cv2.circle(out, (round(x), round(y)), 2 * thick + 1, color, -1, cv2.LINE_AA)
        cv2.putText(out, f"{t:g}s", (round(x) + 4, round(y) - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.3 * thick, color, 1)
    if now is not None:
        x, y = path_positions(points, np.array([now]), smooth)[0]
        cv2.circle(out, (round(x), round(y)), 3 * thick + 2, (255, 64, 64), thick, cv2.LINE_AA)
    return out


def draw_boxes(
    frame: np.ndarray, boxes: list[dict], *, corner: tuple[float, float] | None = None, now: float | None = None
) -> np.ndarray:
    """A copy of uint8 [H, W, 3] with keyed boxes [{t, box}] outlined (the one at `now` seconds brighter) and a
    pending first corner marked."""
    out = frame.copy()
    thick = max(1, round(min(out.shape[:2]) / 240))
    for key in boxes:
        x0, y0, x1, y1 = (round(v) for v in key["box"])
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), (160, 160, 160), thick)
        cv2.putText(
            out, f"{key['t']:g}s", (x0 + 2, y0 + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.3 * thick, (200, 200, 200), 1
        )
    if boxes and now is not None:
        x0, y0, x1, y1 = (round(v) for v in interpolate_boxes(boxes, np.array([now]))[0])
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 255), thick)
    if corner is not None:
        cv2.drawMarker(out, (round(corner[0]), round(corner[1])), (255, 255, 255), cv2.MARKER_CROSS, 8 * thick, thick)
    return out
