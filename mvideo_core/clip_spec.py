"""The clip shape of a base model and the one way a mask sequence is prepared for it.

A `ClipSpec` holds the numbers every layer needs (frame rate, frames per clip, frames shared by neighbouring clips,
VAE factors, latent channels, the scheduler's prediction type, size rules). Engines read it from their loaded model
(`GenerationEngine.spec`); code that runs without a model (training defaults, samples, the studio before loading)
uses the named specs below. Long video, mask preparation, training, the studio and the benches take their numbers
from here instead of writing 8 fps or 33 frames again.

Timeline of a long video: every clip adds stride = clip_frames - overlap_frames frames (clip_seconds), so n clips make
stride * n + 1 frames, n * clip_seconds long. Clip k > 0 covers [stride * k + 1 - overlap, stride * (k + 1) + 1): its
first overlap_frames frames are the last ones of clip k - 1. Clip 0 has no clip before it and covers [0, stride + 1).
With one shared frame every clip is clip_frames long (CogVideoX: [32k, 32k + 33)); with a longer overlap the first
clip is shorter (Wan2.1-VACE, 17 known frames: 65 frames, then 81).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from mvideo_core.masks import MaskSet, as_bool_masks
from mvideo_core.video_io import FITS, check_fps, resize_masks

MaskPolicy = Literal["hold", "loop", "stop"]
MASK_POLICIES: tuple[str, ...] = get_args(MaskPolicy)
MASK_POLICY_HELP = {
    "hold": "masks shorter than the video hold their last frame",
    "loop": "masks shorter than the video start again from their first frame",
    "stop": "the video ends with the masks (whole clips only)",
}


@dataclass(frozen=True)
class ClipSpec:
    """What one clip of a base model looks like. Sizes are (height, width)."""

    fps: float
    clip_frames: int  # frames of one clip, those shared with the neighbours included
    overlap_frames: int  # frames clip k shares with clip k - 1 (the same instants, generated once in the video)
    vae_scale_spatial: int  # pixels per latent pixel
    vae_scale_temporal: int  # frames per latent frame (after the first)
    latent_channels: int
    prediction_type: str  # the scheduler's: "v_prediction", "epsilon", "flow_prediction", ...
    size_multiple: int  # height and width must be multiples of this (VAE factor x patch size)
    default_size: tuple[int, int]

    def __post_init__(self) -> None:
        if not 1 <= self.overlap_frames < self.clip_frames:
            raise ValueError(f"overlap_frames must be in 1..{self.clip_frames - 1}, got {self.overlap_frames}")
        if (self.clip_frames - 1) % self.vae_scale_temporal:
            raise ValueError(f"clip_frames must be {self.vae_scale_temporal}k + 1, got {self.clip_frames}")
        if (self.overlap_frames - 1) % self.vae_scale_temporal:  # so the first clip is {t}k + 1 frames too
            raise ValueError(f"overlap_frames must be {self.vae_scale_temporal}k + 1, got {self.overlap_frames}")

    @property
    def stride(self) -> int:
        """Frames between the starts of neighbouring clips."""
        return self.clip_frames - self.overlap_frames

    @property
    def clip_seconds(self) -> float:
        """The length each clip adds to the video."""
        return self.stride / self.fps

    @property
    def latent_frames(self) -> int:
        """Latent frames of one clip: (F - 1) // t + 1 (33 -> 9 for CogVideoX)."""
        return (self.clip_frames - 1) // self.vae_scale_temporal + 1

    def num_clips(self, seconds: float) -> int:
        """Clips in `seconds`, a positive whole number of clip lengths."""
        number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds)
        n = seconds / self.clip_seconds if number else 0.0
        if n < 1 - 1e-6 or abs(n - round(n)) > 1e-6:
            raise ValueError(
                f"seconds must be a positive multiple of {self.clip_seconds:g} (clips are {self.clip_seconds:g} s), "
                f"got {seconds}"
            )
        return int(round(n))

    def total_frames(self, num_clips: int) -> int:
        """Frames of a video of `num_clips` clips: stride * n + 1."""
        return self.stride * num_clips + 1

    def clip_ranges(self, num_clips: int) -> list[tuple[int, int]]:
        """[start, stop) of each clip on the video's timeline (clip 0 is stride + 1 frames, later ones clip_frames)."""
        return [
            (max(0, self.stride * k + 1 - self.overlap_frames), self.stride * (k + 1) + 1) for k in range(num_clips)
        ]

    def clips_covered(self, num_frames: int) -> int:
        """How many whole clips `num_frames` frames cover."""
        return max(0, (num_frames - 1) // self.stride)

    def check_size(self, height: int, width: int) -> None:
        """Raise a ValueError naming the side that is not a positive multiple of `size_multiple`."""
        for name, value in (("height", height), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % self.size_multiple:
                raise ValueError(
                    f"{name} has to be a positive multiple of {self.size_multiple} for this model, got {value!r}"
                )


# CogVideoX as MVideo uses it (paper 3.3: t1 = 4 s clips at 8 fps, 33 frames; VAE 8x / 4x, 16 latent channels,
# patch 2). The loaded model's own numbers replace the VAE ones (`MVideoEngine.spec`); this is for code without one.
COGVIDEOX_CLIP = ClipSpec(
    fps=8.0,
    clip_frames=33,
    overlap_frames=1,
    vae_scale_spatial=8,
    vae_scale_temporal=4,
    latent_channels=16,
    prediction_type="v_prediction",
    size_multiple=16,
    default_size=(480, 720),
)


def check_mask_policy(policy: str) -> str:
    """`policy` if it is one of MASK_POLICIES, else a ValueError listing them."""
    if policy not in MASK_POLICIES:
        raise ValueError(f"mask policy must be one of {', '.join(MASK_POLICIES)}, got {policy!r}")
    return policy


def mask_timeline_indices(num_masks: int, mask_fps: float, spec: ClipSpec, num_frames: int, policy: str) -> np.ndarray:
    """Which mask frame each of the video's `num_frames` frames takes: int64 [F] (clipped to what exists for "stop").

    Resampling is sample-and-hold (the mask on screen at each output time, as `video_io.resample_indices`); only the
    output's indices are computed, so a mask file declaring a tiny frame rate allocates nothing extra.
    """
    mask_fps, dst = check_fps(mask_fps, "mask fps"), spec.fps
    check_mask_policy(policy)
    if num_masks < 1:
        raise ValueError("masks have no frames")
    available = max(1, math.ceil(num_masks * dst / mask_fps - 1e-6))  # mask frames at the model's frame rate
    out = np.arange(num_frames, dtype=np.int64)
    if policy == "loop":
        out %= available
    else:  # "hold" (and "stop", whose video was already cut to the masks)
        np.minimum(out, available - 1, out=out)
    return np.minimum(np.floor(out * mask_fps / dst + 1e-6).astype(np.int64), num_masks - 1)


def prepare_masks(
    masks: MaskSet | np.ndarray,
    spec: ClipSpec,
    num_clips: int,
    size: tuple[int, int],
    *,
    fps: float | None = None,
    policy: str = "hold",
    fit: str = "crop",
    union: bool = True,
) -> np.ndarray:
    """Masks (a MaskSet, or bool [T, H, W] at `fps`) -> the model's mask timeline bool [F, H, W] at `spec.fps`.

    The union of the objects is resampled to the spec's frame rate, resized to `size` with `fit`, and made as long as
    `num_clips` clips: shorter masks hold their last frame ("hold") or start again ("loop"); longer ones are cut.
    With "stop" the timeline ends with the masks: F covers the whole clips they reach (an error if not even one).
    `union=False` keeps the objects apart: bool [K, F, H, W] (engines that draw each object, e.g. a layout video).
    """
    objects = None
    if isinstance(masks, MaskSet):
        objects, fps = masks.masks, masks.fps  # [K, T, H, W]
        masks = masks.union()
    elif not union:
        objects = as_bool_masks(masks, 3)[None]
    masks = as_bool_masks(masks, 3)
    if fit not in FITS:
        raise ValueError(f"mask fit must be one of {', '.join(FITS)}, got {fit!r}")
    fps = spec.fps if fps is None else check_fps(fps, "mask fps")
    check_mask_policy(policy)
    if masks.shape[0] == 0:
        raise ValueError("masks have no frames")
    if policy == "stop":
        available = max(1, math.ceil(masks.shape[0] * spec.fps / fps - 1e-6))
        covered = spec.clips_covered(available)
        if covered < 1:
            raise ValueError(
                f"the masks last {masks.shape[0] / fps:.2f} s, less than one {spec.clip_seconds:g} s clip; make them "
                "longer or let short masks hold their last frame (mask policy 'hold') or loop ('loop')"
            )
        num_clips = min(num_clips, covered)
    idx = mask_timeline_indices(masks.shape[0], fps, spec, spec.total_frames(num_clips), policy)
    used, inverse = np.unique(idx, return_inverse=True)  # resize each mask frame once, however often it is shown
    if not union:
        return np.ascontiguousarray(resize_masks(objects[:, used], size, fit=fit)[:, inverse])  # [K, F, H, W]
    return np.ascontiguousarray(resize_masks(masks[used], size, fit=fit)[inverse])
