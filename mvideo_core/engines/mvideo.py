"""MVideo on CogVideoX (the paper's method): masks as channels, the previous clip as appearance + motion condition.

Needs a CogVideoX base model and MVideo weights made by `python -m mvideo_core.train`; without them it is base
CogVideoX (masks have no effect). Clips are 33 frames at 8 fps that share one frame with their neighbours (paper 3.3).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvideo_core.budget import Budget
from mvideo_core.clip_spec import COGVIDEOX_CLIP, ClipSpec
from mvideo_core.engines.base import GenerationEngine, PreparedGeneration, frames_to_uint8, interrupt_when
from mvideo_core.masks import MaskSet
from mvideo_core.pipeline_mvideo import MVideoPipeline
from mvideo_core.settings import GenerationSettings
from mvideo_core.tiny import TINY_CONFIGS, save_tiny_base_model
from mvideo_core.weights import DEFAULT_BASE_MODEL, load_mvideo_pipeline


@dataclass
class MVideoPrepared(PreparedGeneration):
    """Adds the prompt's T5 embeddings [1, L, D] (the negative one only with guidance), encoded once per video."""

    prompt_embeds: torch.Tensor | None = None
    negative_prompt_embeds: torch.Tensor | None = None


class MVideoEngine(GenerationEngine):
    """`MVideoPipeline` behind the engine interface; `engine.pipe` is the diffusers pipeline itself."""

    name = "mvideo"
    label = "MVideo on CogVideoX: the paper's method, follows the masks once trained MVideo weights are given"
    default_base_model = DEFAULT_BASE_MODEL
    takes_start_image = True
    takes_reference_images = False
    takes_mask_guidance = True
    tiny_variants = tuple(TINY_CONFIGS)
    pipeline_class = MVideoPipeline

    def __init__(self, pipe: MVideoPipeline):
        if not isinstance(pipe, MVideoPipeline):
            raise TypeError(f"MVideoEngine wraps an MVideoPipeline, got {type(pipe).__name__}")
        self.pipe = pipe
        if not isinstance(getattr(pipe, "mvideo_metadata", None), dict):
            pipe.mvideo_metadata = {"base_model": None, "mvideo_weights": None}

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
    ) -> MVideoEngine:
        """CogVideoX `base_model` + MVideo `weights` (file, folder or hub id) through `load_mvideo_pipeline`."""
        pipe = load_mvideo_pipeline(
            base_model or cls.default_base_model,
            weights,
            require_mvideo_weights=require_weights,
            torch_dtype=torch_dtype,
            device=device,
        )
        return cls(pipe)

    @classmethod
    def load_tiny_random(cls, variant: str | None = None) -> MVideoEngine:
        """A tiny random CogVideoX ("2b": sincos, "5b": RoPE) saved to a temporary folder, loaded by the production
        loader, and the folder removed at once (the weights are in memory): nothing is left behind."""
        variant = variant or cls.tiny_variants[0]
        if variant not in cls.tiny_variants:
            raise ValueError(f"unknown tiny model {variant!r} for the {cls.name} engine; choose {cls.tiny_variants}")
        folder = Path(tempfile.mkdtemp(prefix="mvideo-tiny-"))
        try:
            save_tiny_base_model(folder, variant)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "no MVideo weights": expected for a tiny random model
                pipe = load_mvideo_pipeline(folder, None, require_mvideo_weights=False)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        pipe.mvideo_metadata["base_model"] = f"tiny-random-{variant}"  # a stable name, not the temporary folder
        return cls(pipe)

    # -- what the model is ----------------------------------------------------------------------------------------
    @property
    def spec(self) -> ClipSpec:
        """CogVideoX's clip at MVideo's 8 fps / 33 frames, with the VAE, patch and scheduler of the loaded model."""
        pipe, config = self.pipe, self.pipe.transformer.config
        s = pipe.vae_scale_factor_spatial
        return dataclasses.replace(
            COGVIDEOX_CLIP,
            vae_scale_spatial=s,
            vae_scale_temporal=pipe.vae_scale_factor_temporal,
            latent_channels=pipe.vae.config.latent_channels,
            prediction_type=pipe.scheduler.config.get("prediction_type", "epsilon"),
            size_multiple=s * config.patch_size,
            default_size=(config.sample_height * s, config.sample_width * s),
        )

    @property
    def identity(self) -> dict[str, Any]:
        meta = self.pipe.mvideo_metadata
        return {
            "engine": self.name,
            "base_model": meta.get("base_model"),
            "mvideo_weights": meta.get("mvideo_weights"),
        }

    @property
    def metadata(self) -> dict[str, Any]:
        """Everything known about the loaded weights (MVideo file metadata included)."""
        return dict(self.pipe.mvideo_metadata)

    # -- memory switches ------------------------------------------------------------------------------------------
    def configure_memory(self, offload: str | None = None, vae_tiling: bool = False, vae_slicing: bool = False):
        self.pipe.configure_memory(offload=offload, vae_slicing=vae_slicing, vae_tiling=vae_tiling)
        return self

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> MVideoEngine:
        self.pipe.to(device=device, dtype=dtype)
        return self

    def set_progress(self, enabled: bool) -> None:
        self.pipe.set_progress_bar_config(disable=not enabled)

    # -- generation -----------------------------------------------------------------------------------------------
    def prepare(
        self, masks: MaskSet | None, settings: GenerationSettings, *, budget: Budget | None = None
    ) -> MVideoPrepared:
        """As the base, plus the prompt encoded once for every clip."""
        base = super().prepare(masks, settings, budget=budget)
        s = base.settings
        prompt_embeds, negative_embeds = self.pipe.encode_prompt(
            s.prompt,
            s.negative_prompt,
            do_classifier_free_guidance=s.guidance_scale > 1.0,
            max_sequence_length=self.pipe.transformer.config.max_text_seq_length,
            dtype=self.pipe.transformer.dtype,
        )
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
        return MVideoPrepared(**fields, prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds)

    def generate_clip(
        self,
        prepared: PreparedGeneration,
        k: int,
        previous: np.ndarray | None,
        *,
        seed: int,
        is_cancelled: Callable[[], bool] = lambda: False,
    ) -> np.ndarray | None:
        """Clip k: the start image conditions clip 0, the previous clip every later one (paper 3.3)."""
        if not isinstance(prepared, MVideoPrepared):
            raise TypeError("generate_clip takes what this engine's prepare() returned")
        s = prepared.settings

        out = self.pipe(
            prompt_embeds=prepared.prompt_embeds,
            negative_prompt_embeds=prepared.negative_prompt_embeds,
            masks=prepared.clip_masks(k),
            height=s.height,
            width=s.width,
            num_frames=prepared.spec.clip_frames,
            num_inference_steps=s.num_inference_steps,
            guidance_scale=s.guidance_scale,
            mask_guidance_scale=s.mask_guidance_scale,
            use_dynamic_cfg=s.use_dynamic_cfg,
            generator=torch.Generator(device="cpu").manual_seed(seed),
            start_image=prepared.start_image if k == 0 else None,
            previous_frames=previous,
            condition_size=s.condition_size,
            output_type="np",
            callback_on_step_end=interrupt_when(is_cancelled),
        )
        if self.pipe.interrupt:
            return None
        return frames_to_uint8(out.frames[0])  # float [T, H, W, 3] in [0, 1] -> uint8
