"""Wan2.1-VACE (public weights) behind the engine interface: the edited masks become VACE's layout control video.

Each clip is one `WanVACEPipeline` call: the control video is the objects' outlines on white (the authors' layout
convention, `mvideo_core.vace`), the mask says generate everywhere, and the start image is a reference image.
Clip k > 0 keeps the last `overlap_frames` frames of clip k - 1 as known frames (control = those frames, mask 0), so
motion and appearance carry over: the paper's clip-by-clip idea done the VACE way (the authors' clip extension).
Wan's clip: 81 frames at 16 fps; 17 of them (1 s + 1 frame, 5 latent frames) are known in every clip after the first,
so each clip adds 64 frames = 4 s, as MVideo's clips do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import WanVACEPipeline
from PIL import Image

from mvideo_core.budget import Budget, resolve
from mvideo_core.clip_spec import ClipSpec, prepare_masks
from mvideo_core.engines.base import (
    EngineError,
    GenerationEngine,
    PreparedGeneration,
    frames_to_uint8,
    interrupt_when,
)
from mvideo_core.masks import MaskSet
from mvideo_core.settings import GenerationSettings, SettingsError
from mvideo_core.tiny_wan import TINY_WAN_HEIGHT, TINY_WAN_WIDTH, save_tiny_vace_model
from mvideo_core.vace import (
    DEFAULT_VACE_MODEL,
    VACE_MODELS,
    clip_inputs,
    draw_layout,
    load_vace_pipeline,
    reference_image,
)

# Wan2.1's clip (16 fps, 81 frames, VAE 8x / 4x, 16 latent channels, flow matching, 2x2 patches, 480x832), with
# 17 known frames shared with the previous clip. The loaded model's own VAE / patch / scheduler numbers replace these.
WAN_VACE_CLIP = ClipSpec(
    fps=16.0,
    clip_frames=81,
    overlap_frames=17,
    vae_scale_spatial=8,
    vae_scale_temporal=4,
    latent_channels=16,
    prediction_type="flow_prediction",
    size_multiple=16,
    default_size=(480, 832),
)
MAX_TEXT_TOKENS = 512  # Wan's text length (the pipeline's default max_sequence_length)


@dataclass
class VacePrepared(PreparedGeneration):
    """Adds the per-object mask timeline bool [K, total_frames, H, W] (for the layout's colours), the reference image
    and the prompt's UMT5 embeddings [1, L, D] (the negative one only with guidance), made once per video."""

    objects: np.ndarray | None = None
    reference: Image.Image | None = None
    prompt_embeds: torch.Tensor | None = None
    negative_prompt_embeds: torch.Tensor | None = None

    @property
    def masks_sha1(self) -> str | None:
        """Of each object's timeline, not only their union: the layout draws them apart, so another split of the same
        union is another video (and must not resume this one's clips)."""
        if self.objects is None:
            return None
        return hashlib.sha1(str(self.objects.shape).encode() + np.packbits(self.objects).tobytes()).hexdigest()


class VaceEngine(GenerationEngine):
    """`WanVACEPipeline` behind the engine interface; `engine.pipe` is the diffusers pipeline itself."""

    name = "vace"
    label = "Wan2.1-VACE: public weights, follows the masks' outlines as layout control (no training needed)"
    default_base_model = DEFAULT_VACE_MODEL
    takes_start_image = True  # as a VACE reference image
    takes_reference_images = True
    tiny_variants = ("tiny",)
    pipeline_class = WanVACEPipeline

    def __init__(
        self,
        pipe: WanVACEPipeline,
        base_model: str | None = None,
        default_size: tuple[int, int] = WAN_VACE_CLIP.default_size,
    ):
        if not isinstance(pipe, WanVACEPipeline):
            raise TypeError(f"VaceEngine wraps a WanVACEPipeline, got {type(pipe).__name__}")
        self.pipe = pipe
        self.base_model = base_model or pipe.config.get("_name_or_path") or None
        self.default_size = default_size

    # -- loading --------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        base_model: str | Path | None = None,
        weights: str | Path | None = None,
        *,
        require_weights: bool = True,
        torch_dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
    ) -> VaceEngine:
        """A Wan2.1-VACE checkpoint (hub id or folder); VACE needs no extra weights."""
        if weights is not None:
            raise EngineError(
                f"the {cls.name} engine takes no extra weights (got {weights}); leave --mvideo-weights out"
            )
        base_model = base_model or cls.default_base_model
        pipe = load_vace_pipeline(base_model, torch_dtype=torch_dtype, device=device)
        return cls(pipe, str(base_model))

    @classmethod
    def load_tiny_random(cls, variant: str | None = None) -> VaceEngine:
        """A tiny random Wan VACE saved to a temporary folder, loaded by the production loader, the folder removed."""
        variant = variant or cls.tiny_variants[0]
        if variant not in cls.tiny_variants:
            raise ValueError(f"unknown tiny model {variant!r} for the {cls.name} engine; choose {cls.tiny_variants}")
        folder = Path(tempfile.mkdtemp(prefix="vace-tiny-"))
        try:
            pipe = load_vace_pipeline(save_tiny_vace_model(folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return cls(pipe, f"tiny-random-{cls.name}", default_size=(TINY_WAN_HEIGHT, TINY_WAN_WIDTH))

    # -- what the model is ----------------------------------------------------------------------------------------
    @property
    def spec(self) -> ClipSpec:
        """Wan's clip with the VAE, patch and scheduler of the loaded model."""
        pipe = self.pipe
        s = pipe.vae_scale_factor_spatial
        return dataclasses.replace(
            WAN_VACE_CLIP,
            vae_scale_spatial=s,
            vae_scale_temporal=pipe.vae_scale_factor_temporal,
            latent_channels=pipe.vae.config.z_dim,
            prediction_type=pipe.scheduler.config.get("prediction_type", "flow_prediction"),
            size_multiple=s * pipe.transformer.config.patch_size[1],
            default_size=self.default_size,
        )

    @property
    def identity(self) -> dict[str, Any]:
        return {"engine": self.name, "base_model": self.base_model}

    @property
    def metadata(self) -> dict[str, Any]:
        return {**self.identity, "model": VACE_MODELS.get(str(self.base_model), "Wan2.1-VACE")}

    @property
    def max_sequence_length(self) -> int:
        """Text tokens the prompt is padded to: Wan's 512, or fewer where the tokenizer is shorter (tiny models)."""
        return min(MAX_TEXT_TOKENS, int(getattr(self.pipe.tokenizer, "model_max_length", MAX_TEXT_TOKENS)))

    # -- memory switches ------------------------------------------------------------------------------------------
    def configure_memory(self, offload: str | None = None, vae_tiling: bool = False, vae_slicing: bool = False):
        """CPU offload ("model" / "sequential") needs a CUDA GPU; VAE tiling / slicing work anywhere."""
        if offload not in (None, "none", "model", "sequential"):
            raise EngineError(f"offload must be None, 'model' or 'sequential', got {offload!r}")
        if offload in ("model", "sequential"):
            if not torch.cuda.is_available():
                raise EngineError(f"CPU offload ({offload!r}) needs a CUDA GPU; none is visible here")
            if offload == "model":
                self.pipe.enable_model_cpu_offload()
            else:
                self.pipe.enable_sequential_cpu_offload()
        if vae_tiling:
            self.pipe.vae.enable_tiling()
        if vae_slicing:
            self.pipe.vae.enable_slicing()
        return self

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> VaceEngine:
        """Move the pipeline; a new dtype applies to the transformer and text encoder, the VAE stays float32."""
        if device is not None:
            self.pipe.to(device)
        if dtype is not None:
            self.pipe.transformer.to(dtype=dtype)
            self.pipe.text_encoder.to(dtype=dtype)
        return self

    def set_progress(self, enabled: bool) -> None:
        self.pipe.set_progress_bar_config(disable=not enabled)

    # -- generation -----------------------------------------------------------------------------------------------
    def check_settings(self, settings: GenerationSettings, masks: MaskSet | None) -> None:
        super().check_settings(settings, masks)
        if settings.mask_guidance_scale != 1.0:
            raise SettingsError("mask_guidance_scale", f"is MVideo's; the {self.name} engine has none, leave it at 1")
        if settings.condition_size is not None:
            raise SettingsError("condition_size", f"is MVideo's motion condition; the {self.name} engine has none")

    def prepare(
        self, masks: MaskSet | None, settings: GenerationSettings, *, budget: Budget | None = None
    ) -> VacePrepared:
        """As the base, plus each object's mask timeline, the reference image and the prompt encoded once."""
        base = super().prepare(masks, settings, budget=budget)
        s, spec = base.settings, base.spec
        objects = None
        if masks is not None:
            resolve(budget).check(
                f"the layout of {masks.num_objects} objects over {s.seconds:g} s",
                frames=spec.total_frames(base.num_clips),
                height=s.height,
                width=s.width,
                count=masks.num_objects,
                hint="merge objects, or choose a shorter length or a smaller size",
                error=EngineError,
            )
            objects = prepare_masks(
                masks, spec, base.num_clips, base.size, policy=s.mask_policy, fit=s.mask_fit, union=False
            )  # [K, F, H, W]
        start_image = s.start_image  # the whole picture: the pipeline fits a reference onto a white canvas
        prompt_embeds, negative_embeds = self.pipe.encode_prompt(
            s.prompt,
            s.negative_prompt,
            do_classifier_free_guidance=s.guidance_scale > 1.0,
            max_sequence_length=self.max_sequence_length,
        )
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
        fields["start_image"] = start_image
        return VacePrepared(
            **fields,
            objects=objects,
            reference=None if start_image is None else reference_image(start_image),
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_embeds,
        )

    def clip_inputs(self, prepared: VacePrepared, k: int, previous: np.ndarray | None):
        """Clip k's control video and mask (`mvideo_core.vace.VaceClipInputs`): clip k-1's last frames, known, then
        the layout of the objects over the rest of the clip (grey without masks)."""
        start, stop = prepared.spec.clip_ranges(prepared.num_clips)[k]
        layout = None if prepared.objects is None else draw_layout(prepared.objects[:, start:stop])
        known = None if previous is None or k == 0 else previous[-prepared.spec.overlap_frames :]
        return clip_inputs(stop - start, prepared.size, layout, known)

    def generate_clip(
        self,
        prepared: PreparedGeneration,
        k: int,
        previous: np.ndarray | None,
        *,
        seed: int,
        is_cancelled: Callable[[], bool] = lambda: False,
    ) -> np.ndarray | None:
        """Clip k through `WanVACEPipeline`: the layout (and clip k-1's last frames), the reference image."""
        if not isinstance(prepared, VacePrepared):
            raise TypeError("generate_clip takes what this engine's prepare() returned")
        s = prepared.settings
        inputs = self.clip_inputs(prepared, k, previous)
        video, mask = inputs.pipeline_inputs()

        out = self.pipe(
            video=video,
            mask=mask,
            reference_images=prepared.reference,
            prompt_embeds=prepared.prompt_embeds,
            negative_prompt_embeds=prepared.negative_prompt_embeds,
            height=s.height,
            width=s.width,
            num_frames=video.shape[1],
            num_inference_steps=s.num_inference_steps,
            guidance_scale=s.guidance_scale,
            generator=torch.Generator(device="cpu").manual_seed(seed),
            output_type="np",
            callback_on_step_end=interrupt_when(is_cancelled),
        )
        if self.pipe.interrupt:
            return None
        return frames_to_uint8(out.frames[0])  # float [T, H, W, 3] in [0, 1] -> uint8
