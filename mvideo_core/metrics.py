"""Mask alignment of generated videos: the mask mIoU S_m of the paper (eq. 3).

Each generated frame is re-segmented by a tracker prompted with the box of the conditioning mask on that frame; the
IoU of the result with the conditioning mask is averaged over frames and videos. Works on any (video, masks) pair,
so a folder of another model's outputs is scored the same way (`python -m mvideo_core.evaluate`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from mvideo_core.masks import MaskError, MaskSet, as_bool_masks


class MetricError(ValueError):
    """The inputs of a metric do not fit together; the message says how to make them fit."""


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks [H, W] (or any equal shapes). Two empty masks agree perfectly: 1.0."""
    a = as_bool_masks(np.asarray(a), np.ndim(a), "mask a")
    b = as_bool_masks(np.asarray(b), np.ndim(b), "mask b")
    if a.shape != b.shape:
        raise MetricError(f"masks to compare must share a shape, got {a.shape} and {b.shape}")
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """Bounding box of a bool mask [H, W] as float32 xyxy pixels (x1, y1 exclusive); None when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


@dataclass
class ClipScore:
    """mIoU of one generated video. `frame_ious[j]` is NaN where no object of the conditioning masks is present."""

    name: str
    miou: float
    frames_scored: int
    frame_ious: list[float] = field(default_factory=list)
    object_ious: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["frame_ious"] = [None if np.isnan(v) else round(v, 6) for v in self.frame_ious]
        return d


@dataclass
class MaskAlignment:
    """S_m over a set of clips: the mean IoU over every scored frame of every clip, and per-clip scores."""

    miou: float
    frames_scored: int
    clips: list[ClipScore]
    failed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "miou": self.miou,
            "S_m": round(100 * self.miou, 2) if not np.isnan(self.miou) else None,
            "frames_scored": self.frames_scored,
            "clips": [c.to_dict() for c in self.clips],
            "failed": self.failed,
        }


def _as_maskset(masks: MaskSet | np.ndarray, fps: float) -> MaskSet:
    if isinstance(masks, MaskSet):
        return masks
    masks = np.asarray(masks)
    if masks.ndim == 3:
        masks = masks[None]
    try:
        return MaskSet(masks, fps)
    except MaskError as err:
        raise MetricError(f"conditioning masks: {err}") from err


def fit_masks_to_video(maskset: MaskSet, num_frames: int, size: tuple[int, int], fps: float) -> np.ndarray:
    """The masks bool [K, T, H, W] resampled to the video's fps and resized (nearest) to its size."""
    from mvideo_core.budget import default_budget
    from mvideo_core.video_io import resample_indices, resize_masks

    masks = maskset.masks
    idx = resample_indices(maskset.num_frames, maskset.fps, fps) if abs(maskset.fps - fps) > 1e-3 else None
    covered = masks.shape[1] if idx is None else len(idx)
    if covered != num_frames:  # before the resampled copy is made
        raise MetricError(
            f"the masks cover {covered} frames at {fps:g} fps but the video has {num_frames}; "
            "score a video generated from these masks (same duration), or trim the masks to it"
        )
    if idx is not None:
        h, w = maskset.size
        default_budget().check(
            f"masks resampled to {fps:g} fps",
            frames=num_frames,
            height=h,
            width=w,
            count=max(1, maskset.num_objects),
            error=MetricError,
        )
        masks = masks[:, idx]
    if tuple(masks.shape[2:]) != tuple(size):
        masks = resize_masks(masks, size, fit="stretch")
    return masks


def score_clip(
    frames: np.ndarray,
    masks: MaskSet | np.ndarray,
    tracker,
    fps: float = 8.0,
    name: str = "clip",
) -> ClipScore:
    """Paper eq. 3 for one video. frames: uint8 [T, H, W, 3]; masks: MaskSet [K, T, h, w] or bool [T, h, w].

    For every frame j and object k whose conditioning mask is not empty, the tracker is prompted with that mask's box
    on frame j of the generated video and its mask is compared with the conditioning mask. A frame's IoU is the mean
    over its objects; frames with no object are not scored (there is no box to prompt with).
    """
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise MetricError(f"frames must be uint8 [T, H, W, 3], got {getattr(frames, 'shape', type(frames).__name__)}")
    maskset = _as_maskset(masks, fps)
    num_frames, height, width = frames.shape[:3]
    gt = fit_masks_to_video(maskset, num_frames, (height, width), fps)  # [K, T, H, W]
    session = tracker.start(frames, fps)
    ious = np.full((maskset.num_objects, num_frames), np.nan)
    for k, obj_id in enumerate(maskset.ids):
        for j in range(num_frames):
            box = mask_box(gt[k, j])
            if box is None:
                continue
            pred = tracker.add_prompt(session, obj_id, j, box=box, name=maskset.names[k])
            ious[k, j] = mask_iou(gt[k, j], np.asarray(pred, dtype=bool))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            frame_ious = np.nanmean(ious, axis=0) if len(ious) else np.full(num_frames, np.nan)
            object_ious = {maskset.names[k]: float(np.nanmean(ious[k])) for k in range(maskset.num_objects)}
    scored = ~np.isnan(frame_ious)
    miou = float(frame_ious[scored].mean()) if scored.any() else float("nan")
    return ClipScore(name, miou, int(scored.sum()), frame_ious.tolist(), object_ious)


def aggregate(clips: list[ClipScore], failed: dict[str, str] | None = None) -> MaskAlignment:
    """S_m = (1 / NM) sum_ij IoU: the mean over every scored frame of every clip (per-clip means are in `clips`)."""
    values = [v for c in clips for v in c.frame_ious if not np.isnan(v)]
    miou = float(np.mean(values)) if values else float("nan")
    return MaskAlignment(miou, len(values), clips, dict(failed or {}))
