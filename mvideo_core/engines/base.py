"""The interface every generation engine implements, so long video, the CLI and the studio never ask which it is.

An engine wraps one loaded base model family (MVideo on CogVideoX, Wan2.1-VACE, ...). It says what it needs (its
`ClipSpec`, sizes, whether it takes a start image or reference images), turns masks and `GenerationSettings` into
prepared inputs once (`prepare`), then makes clip k from the previous clip (`generate_clip`). `generate_long_video`
owns everything else (timeline, files, resume, colour, the record), identically for every engine.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from mvideo_core.budget import Budget
from mvideo_core.clip_spec import ClipSpec, prepare_masks
from mvideo_core.masks import MaskSet
from mvideo_core.settings import GenerationSettings, SettingsError
from mvideo_core.video_io import resize_frames


class EngineError(ValueError):
    """An engine cannot run these inputs (missing weights, an unsupported option); the message says what to do."""


@dataclass
class PreparedGeneration:
    """Inputs made once per long video; engines subclass it to add theirs (e.g. the encoded prompt).

    settings: the caller's settings with height and width resolved to the model's size.
    masks: the mask timeline bool [total_frames, H, W] at the spec's fps, or None (text only).
    start_image: uint8 [H, W, 3] at the video's size, or None.
    """

    settings: GenerationSettings
    spec: ClipSpec
    num_clips: int
    masks: np.ndarray | None = None
    start_image: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.settings.height, self.settings.width

    def clip_masks(self, k: int) -> np.ndarray | None:
        """Masks of clip k: bool [clip_frames, H, W], or None."""
        if self.masks is None:
            return None
        start, stop = self.spec.clip_ranges(self.num_clips)[k]
        return self.masks[start:stop]

    @property
    def masks_sha1(self) -> str | None:
        return None if self.masks is None else hashlib.sha1(np.packbits(self.masks).tobytes()).hexdigest()

    @property
    def start_image_sha1(self) -> str | None:
        return None if self.start_image is None else hashlib.sha1(self.start_image.tobytes()).hexdigest()


def interrupt_when(is_cancelled: Callable[[], bool]) -> Callable[..., dict]:
    """A diffusers `callback_on_step_end` that interrupts the pipeline after the step in which `is_cancelled()`."""

    def on_step_end(pipe, i, t, kwargs):
        if is_cancelled():
            pipe._interrupt = True
        return {}

    return on_step_end


def frames_to_uint8(frames: np.ndarray) -> np.ndarray:
    """Pipeline frames float [T, H, W, 3] in [0, 1] -> uint8 (rounded)."""
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class GenerationEngine(ABC):
    """One base model behind the long-video loop. Subclasses live one per file in `mvideo_core/engines/`.

    Class attributes describe the engine before anything loads (the CLI's and the studio's choices are built from
    them); `spec` is read from the loaded model.
    """

    name: ClassVar[str]  # registry key and the CLI's --engine value
    label: ClassVar[str]  # one line for people: what it is, what it needs
    default_base_model: ClassVar[str]  # hub id loaded when none is given
    takes_start_image: ClassVar[bool] = False
    takes_reference_images: ClassVar[bool] = False
    takes_mask_guidance: ClassVar[bool] = False  # `mask_guidance_scale` (a push towards the masks) is honoured
    tiny_variants: ClassVar[tuple[str, ...]] = ()  # names `load_tiny_random` accepts; the first is the default
    pipeline_class: ClassVar[type | None] = None  # the diffusers pipeline it wraps (`as_engine(pipe)`), if one

    # -- loading --------------------------------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def from_pretrained(
        cls,
        base_model: str | Path | None = None,
        weights: str | Path | None = None,
        *,
        require_weights: bool = True,
        torch_dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
    ) -> GenerationEngine:
        """The engine on `base_model` (hub id or local folder; None = `default_base_model`) and its extra weights."""

    @classmethod
    @abstractmethod
    def load_tiny_random(cls, variant: str | None = None) -> GenerationEngine:
        """A tiny random-weight model built offline and loaded by the production loader (tests, smoke runs)."""

    # -- what the model is ----------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def spec(self) -> ClipSpec:
        """The loaded model's clip shape."""

    @property
    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What generation.json records about the model: at least `engine` and `base_model` (a stable id)."""

    @property
    def metadata(self) -> dict[str, Any]:
        """Everything known about the loaded weights, recorded under "model" in generation.json."""
        return dict(self.identity)

    # -- memory switches ------------------------------------------------------------------------------------------
    @abstractmethod
    def configure_memory(self, offload: str | None = None, vae_tiling: bool = False, vae_slicing: bool = False):
        """CPU offload ("model" / "sequential", CUDA only) and VAE tiling / slicing; returns self."""

    @abstractmethod
    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> GenerationEngine:
        """Move the model (device and / or dtype); returns self."""

    @abstractmethod
    def set_progress(self, enabled: bool) -> None:
        """Show or hide the per-step progress bar."""

    # -- generation -----------------------------------------------------------------------------------------------
    def check_settings(self, settings: GenerationSettings, masks: MaskSet | None) -> None:
        """Refuse settings this engine cannot honour (before anything is allocated)."""
        if settings.start_image is not None and not self.takes_start_image:
            raise SettingsError("start_image", f"is not used by the {self.name} engine; leave it out")
        if settings.mask_guidance_scale != 1.0 and masks is None:
            raise SettingsError("mask_guidance_scale", "steers towards the masks: give masks too, or leave it at 1")

    def prepare(
        self, masks: MaskSet | None, settings: GenerationSettings, *, budget: Budget | None = None
    ) -> PreparedGeneration:
        """Check `settings`, plan the clips (bounded by `budget`, default the process's) and bring masks and start
        image to the model.

        Engines extend this (call it, then add their own inputs to a `PreparedGeneration` subclass).
        """
        self.check_settings(settings, masks)
        spec = self.spec
        plan = settings.plan(spec, budget)
        settings = settings.replace(height=plan.height, width=plan.width)
        size, num_clips = (plan.height, plan.width), plan.num_clips
        timeline = None
        if masks is not None:
            timeline = prepare_masks(masks, spec, num_clips, size, policy=settings.mask_policy, fit=settings.mask_fit)
            num_clips = min(num_clips, spec.clips_covered(timeline.shape[0]))  # "stop": the masks end the video
        start_image = None if settings.start_image is None else resize_frames(settings.start_image, size)
        return PreparedGeneration(settings, spec, num_clips, timeline, start_image)

    @abstractmethod
    def generate_clip(
        self,
        prepared: PreparedGeneration,
        k: int,
        previous: np.ndarray | None,
        *,
        seed: int,
        is_cancelled: Callable[[], bool] = lambda: False,
    ) -> np.ndarray | None:
        """Clip k -> uint8 [clip_frames, H, W, 3], or None when `is_cancelled()` turned true mid-clip.

        previous: clip k-1's frames uint8 [clip_frames, H, W, 3] (None for k = 0); its last `overlap_frames` are the
        same instants as this clip's first ones.
        """
