"""MVideoPipeline: one clip of mask-conditioned CogVideoX, in the style of diffusers' `pipeline_cogvideox.py`.

A clip is generated from a text prompt, an optional binary mask video (the motion, paper 3.2) and optional long-video
conditions (paper 3.3): the frames of the previous clip (its last frame at full resolution, all of it at low
resolution) or a start image (conditions clip 0 like a previous clip's last frame). Classifier-free guidance acts on
the text only: the mask and the conditions are given to both branches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXDPMScheduler
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.loaders import CogVideoXLoraLoaderMixin
from diffusers.pipelines.cogvideo.pipeline_cogvideox import CogVideoXPipeline, retrieve_timesteps
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.video_processor import VideoProcessor
from transformers import PreTrainedTokenizerBase, T5EncoderModel

from mvideo_core.masks import MaskSet
from mvideo_core.transformer import ConditionCache, ConditionLatents, MVideoTransformer3DModel
from mvideo_core.video_io import resize_frames

# Paper sizes: clips at 480x720, motion condition at 256x384.
PAPER_SIZE = (480, 720)
PAPER_CONDITION_SIZE = (256, 384)
OUTPUT_TYPES = ("np", "pil", "pt", "latent")


@dataclass
class MVideoPipelineOutput(BaseOutput):
    """frames: np float [B, T, H, W, 3] in [0, 1] ("np"), list of PIL lists ("pil"), or latents [B, F, C, H, W]."""

    frames: Any


def default_condition_size(height: int, width: int) -> tuple[int, int]:
    """Low-res motion condition size: the paper's 256x384 for 480x720, scaled proportionally, multiples of 16."""
    h = max(16, int(round(height * PAPER_CONDITION_SIZE[0] / PAPER_SIZE[0] / 16)) * 16)
    w = max(16, int(round(width * PAPER_CONDITION_SIZE[1] / PAPER_SIZE[1] / 16)) * 16)
    return h, w


def _frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float [1, 3, T, H, W] in [-1, 1] (the VAE's input)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float() / 127.5 - 1.0
    return x.permute(3, 0, 1, 2).unsqueeze(0)


def is_mask_guidance_scale(value: Any) -> bool:
    """Whether `value` is a usable mask guidance scale: a finite number >= 1 (1 = off); bools are not numbers here."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value >= 1


class MVideoPipeline(DiffusionPipeline, CogVideoXLoraLoaderMixin):
    """Text + mask sequence (+ previous clip) to one video clip with an `MVideoTransformer3DModel`."""

    _optional_components = []
    model_cpu_offload_seq = "text_encoder->transformer->vae"
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds", "mask_latents"]

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        text_encoder: T5EncoderModel,
        vae: AutoencoderKLCogVideoX,
        transformer: MVideoTransformer3DModel,
        scheduler: CogVideoXDDIMScheduler | CogVideoXDPMScheduler,
    ):
        super().__init__()
        if not isinstance(transformer, MVideoTransformer3DModel):
            raise TypeError(
                f"MVideoPipeline needs an MVideoTransformer3DModel, got {type(transformer).__name__}; "
                "convert a CogVideoX transformer with MVideoTransformer3DModel.from_cogvideox(base)"
            )
        self.register_modules(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
        )
        self.vae_scale_factor_spatial = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.vae_scale_factor_temporal = self.vae.config.temporal_compression_ratio
        self.vae_scaling_factor_image = self.vae.config.scaling_factor
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)

    # -- memory switches (offload only with CUDA) -------------------------------------------------------------------
    def enable_model_cpu_offload(self, gpu_id: int | None = None, device: torch.device | str = None) -> None:
        """Keep one model at a time on the GPU (needs CUDA)."""
        self._require_cuda("model CPU offload (--offload model)")
        super().enable_model_cpu_offload(gpu_id=gpu_id, device=device)

    def enable_sequential_cpu_offload(self, gpu_id: int | None = None, device: torch.device | str = None) -> None:
        """Stream weights to the GPU layer by layer: least memory, slowest (needs CUDA)."""
        self._require_cuda("sequential CPU offload (--offload sequential)")
        super().enable_sequential_cpu_offload(gpu_id=gpu_id, device=device)

    @staticmethod
    def _require_cuda(what: str) -> None:
        if not torch.cuda.is_available():
            raise RuntimeError(f"{what} needs a CUDA GPU and none is available; run without it on this machine")

    def enable_vae_slicing(self) -> None:
        """Decode the batch one video at a time."""
        self.vae.enable_slicing()

    def enable_vae_tiling(self) -> None:
        """Decode in overlapping spatial tiles (less memory for large sizes)."""
        self.vae.enable_tiling()

    def configure_memory(self, offload: str | None = None, vae_slicing: bool = False, vae_tiling: bool = False):
        """Apply memory options; offload ("model" / "sequential") only where CUDA is present, else a clear error."""
        if offload not in (None, "none", "model", "sequential"):
            raise ValueError(f"offload must be None, 'model' or 'sequential', got {offload!r}")
        if offload == "model":
            self.enable_model_cpu_offload()
        elif offload == "sequential":
            self.enable_sequential_cpu_offload()
        if vae_slicing:
            self.enable_vae_slicing()
        if vae_tiling:
            self.enable_vae_tiling()
        return self

    # -- text (CogVideoX's own: the same T5 and tokenizer) -----------------------------------------------------------
    _get_t5_prompt_embeds = CogVideoXPipeline._get_t5_prompt_embeds
    encode_prompt = CogVideoXPipeline.encode_prompt  # -> ([B, L, D], [B, L, D] | None)

    # -- conditions -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _vae_encode(self, video: torch.Tensor) -> torch.Tensor:
        """[1, 3, T, H, W] in [-1, 1] -> scaled latents [1, F, C, h, w] (distribution mode: deterministic)."""
        video = video.to(device=self.vae.device, dtype=self.vae.dtype)
        latents = self.vae.encode(video).latent_dist.mode() * self.vae_scaling_factor_image  # [1, C, F, h, w]
        return latents.permute(0, 2, 1, 3, 4)

    def encode_masks(self, masks: np.ndarray) -> torch.Tensor:
        """Binary masks bool [T, H, W] -> mask latents [1, F, C, h, w]: a 3-channel video in [-1, 1] through the VAE."""
        video = torch.from_numpy(np.ascontiguousarray(masks)).float() * 2.0 - 1.0  # [T, H, W]
        video = video[None, None].expand(1, 3, *video.shape)  # [1, 3, T, H, W]
        return self._vae_encode(video)

    def encode_conditions(
        self,
        previous_frames: np.ndarray | None = None,
        start_image: np.ndarray | None = None,
        condition_size: tuple[int, int] | None = None,
    ) -> ConditionLatents:
        """Long-video conditions from the previous clip uint8 [T, H, W, 3] (appearance = its last frame at full
        resolution, motion = all of it at `condition_size`) or from a start image uint8 [H, W, 3] (appearance only)."""
        if start_image is not None:
            return ConditionLatents(appearance=self._vae_encode(_frames_to_tensor(start_image[None])))
        if previous_frames is None:
            return ConditionLatents()
        appearance = self._vae_encode(_frames_to_tensor(previous_frames[-1:]))  # [1, 1, C, h, w]
        h, w = condition_size or default_condition_size(*previous_frames.shape[1:3])
        # resized exactly as training data is (mvideo_core.training.precompute): video_io, centre crop
        low = resize_frames(previous_frames, (h, w), fit="crop")  # uint8 [T, h, w, 3]
        motion = self._vae_encode(_frames_to_tensor(low))  # [1, Fc, C, h/8, w/8]
        return ConditionLatents(appearance=appearance, motion=motion)

    # -- checks (one method a concern; check_inputs runs them all before any model runs) -----------------------------
    def check_inputs(
        self,
        prompt,
        height,
        width,
        num_frames,
        negative_prompt,
        callback_on_step_end_tensor_inputs,
        prompt_embeds=None,
        negative_prompt_embeds=None,
        masks=None,
        mask_latents=None,
        start_image=None,
        previous_frames=None,
        condition_latents=None,
        condition_size=None,
        output_type="np",
        num_inference_steps=50,
        mask_guidance_scale=1.0,
        latents=None,
    ) -> None:
        """Raise a ValueError naming the offending value and the expected one before any model runs."""
        self._check_call(
            height, width, num_frames, num_inference_steps, output_type, callback_on_step_end_tensor_inputs
        )
        batch = self._check_text(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds)
        self._check_latents(latents, batch, height, width, num_frames)
        self._check_masks(masks, mask_latents, mask_guidance_scale, batch, height, width, num_frames)
        self._check_conditions(start_image, previous_frames, condition_latents, condition_size, height, width)

    def _check_call(self, height, width, num_frames, num_inference_steps, output_type, tensor_inputs) -> None:
        """Sizes, frame count, steps, output type and the step callback's tensor names."""
        multiple = self.vae_scale_factor_spatial * self.transformer.config.patch_size
        for name, value in (("height", height), ("width", width)):
            if not isinstance(value, int) or value <= 0 or value % multiple:
                raise ValueError(f"`{name}` has to be a positive multiple of {multiple} but is {value}")
        t = self.vae_scale_factor_temporal
        if not isinstance(num_frames, int) or num_frames < 1 or (num_frames - 1) % t:
            raise ValueError(f"`num_frames` has to be {t}k + 1 (e.g. 33 = 4 s at 8 fps, 49 = 6 s) but is {num_frames}")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` has to be a positive integer but is {num_inference_steps}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` has to be one of {OUTPUT_TYPES} but is {output_type!r}")
        if tensor_inputs is not None:
            bad = [k for k in tensor_inputs if k not in self._callback_tensor_inputs]
            if bad:
                raise ValueError(
                    f"`callback_on_step_end_tensor_inputs` has to be in {self._callback_tensor_inputs}, found {bad}"
                )

    def _check_text(self, prompt, negative_prompt, prompt_embeds, negative_prompt_embeds) -> int:
        """The prompt or its embeddings (one of the two), the negative likewise; returns the batch size."""
        if prompt is not None and prompt_embeds is not None:
            raise ValueError("Cannot forward both `prompt` and `prompt_embeds`; pass only one of the two")
        if prompt is None and prompt_embeds is None:
            raise ValueError("Provide either `prompt` or `prompt_embeds`; both are undefined")
        if prompt is not None:
            if not isinstance(prompt, (str, list)) or (isinstance(prompt, list) and not prompt):
                raise ValueError(f"`prompt` has to be a string or a non-empty list of strings but is {prompt!r}")
            prompts = [prompt] if isinstance(prompt, str) else prompt
            if any(not isinstance(p, str) or not p.strip() for p in prompts):
                raise ValueError(
                    "`prompt` is empty; describe the video to generate (e.g. 'an astronaut doing a backflip on "
                    "the moon') or pass `prompt_embeds`"
                )
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError("Cannot forward both `negative_prompt` and `negative_prompt_embeds`; pass one of the two")
        if prompt is not None and negative_prompt_embeds is not None:
            raise ValueError("Cannot forward `negative_prompt_embeds` with `prompt`; pass `prompt_embeds` too")
        if prompt_embeds is not None and negative_prompt_embeds is not None:
            if prompt_embeds.shape != negative_prompt_embeds.shape:
                raise ValueError(
                    f"`prompt_embeds` {tuple(prompt_embeds.shape)} and `negative_prompt_embeds` "
                    f"{tuple(negative_prompt_embeds.shape)} must have the same shape"
                )
        if prompt_embeds is not None and (not isinstance(prompt_embeds, torch.Tensor) or prompt_embeds.ndim != 3):
            raise ValueError(
                f"`prompt_embeds` has to be a tensor [B, L, D] but is {getattr(prompt_embeds, 'shape', prompt_embeds)}"
            )
        batch = 1 if prompt_embeds is None else prompt_embeds.shape[0]
        return len(prompt) if isinstance(prompt, list) else batch

    def _check_latents(self, latents, batch, height, width, num_frames) -> None:
        """Given starting latents have the shape the pipeline would draw: [B, F, C, h, w]."""
        if latents is None:
            return
        s, t = self.vae_scale_factor_spatial, self.vae_scale_factor_temporal
        want = (batch, (num_frames - 1) // t + 1, self.transformer.config.in_channels, height // s, width // s)
        if not isinstance(latents, torch.Tensor) or tuple(latents.shape) != want:
            raise ValueError(f"`latents` has to be {want} but is {getattr(latents, 'shape', latents)}")

    def _check_masks(self, masks, mask_latents, mask_guidance_scale, batch, height, width, num_frames) -> None:
        """One mask per frame at the video's size (or mask latents of the matching shape), and mask guidance."""
        if not is_mask_guidance_scale(mask_guidance_scale):
            raise ValueError(
                f"`mask_guidance_scale` has to be a number >= 1 (1 = off, 2 = a moderate push towards the masks) "
                f"but is {mask_guidance_scale!r}"
            )
        if mask_guidance_scale != 1.0 and masks is None and mask_latents is None:
            raise ValueError("`mask_guidance_scale` steers towards the masks: give `masks` too, or leave it at 1")
        t = self.vae_scale_factor_temporal
        if masks is not None and mask_latents is not None:
            raise ValueError("Cannot forward both `masks` and `mask_latents`; pass one of the two")
        if masks is not None:
            if not isinstance(masks, np.ndarray) or masks.ndim != 3 or masks.dtype != bool:
                desc = f"{type(masks).__name__} {getattr(masks, 'shape', '')} {getattr(masks, 'dtype', '')}".strip()
                raise ValueError(f"`masks` has to be a bool numpy array [T, H, W] or a MaskSet but is {desc}")
            if masks.shape[0] != num_frames:
                raise ValueError(
                    f"`masks` has {masks.shape[0]} frames but `num_frames` is {num_frames}; give one mask per frame"
                )
            if masks.shape[1:] != (height, width):
                raise ValueError(
                    f"`masks` are {masks.shape[2]}x{masks.shape[1]} but the video is {width}x{height}; resize them "
                    "first (mvideo_core.video_io.resize_masks)"
                )
        if mask_latents is not None:
            f_lat = (num_frames - 1) // t + 1
            s = self.vae_scale_factor_spatial
            want = (batch, f_lat, self.transformer.mask_proj.in_channels, height // s, width // s)
            if not isinstance(mask_latents, torch.Tensor) or tuple(mask_latents.shape) != want:
                raise ValueError(f"`mask_latents` has to be {want} but is {getattr(mask_latents, 'shape', None)}")

    def _check_conditions(
        self, start_image, previous_frames, condition_latents, condition_size, height, width
    ) -> None:
        """At most one long-video condition, each at the video's size; the motion condition's size."""
        multiple = self.vae_scale_factor_spatial * self.transformer.config.patch_size
        t = self.vae_scale_factor_temporal
        given = [n for n, v in (("start_image", start_image), ("previous_frames", previous_frames)) if v is not None]
        if condition_latents is not None:
            given.append("condition_latents")
        if len(given) > 1:
            raise ValueError(f"Pass at most one of `start_image`, `previous_frames`, `condition_latents`; got {given}")
        if start_image is not None:
            if not isinstance(start_image, np.ndarray) or start_image.dtype != np.uint8 or start_image.ndim != 3:
                raise ValueError(
                    f"`start_image` has to be a uint8 RGB array [H, W, 3] but is {getattr(start_image, 'shape', start_image)}"
                )
            if start_image.shape != (height, width, 3):
                raise ValueError(
                    f"`start_image` is {start_image.shape[1]}x{start_image.shape[0]} but the video is {width}x{height}; "
                    "resize it first (mvideo_core.video_io.resize_frames)"
                )
        if previous_frames is not None:
            if (
                not isinstance(previous_frames, np.ndarray)
                or previous_frames.dtype != np.uint8
                or previous_frames.ndim != 4
                or previous_frames.shape[-1] != 3
            ):
                raise ValueError(
                    "`previous_frames` has to be uint8 RGB frames [T, H, W, 3] but is "
                    f"{getattr(previous_frames, 'shape', previous_frames)}"
                )
            if previous_frames.shape[1:3] != (height, width) or (previous_frames.shape[0] - 1) % t:
                raise ValueError(
                    f"`previous_frames` has to be {t}k + 1 frames of {width}x{height} but is "
                    f"{previous_frames.shape[0]} frames of {previous_frames.shape[2]}x{previous_frames.shape[1]}"
                )
        if condition_size is not None:
            if len(condition_size) != 2 or any(
                not isinstance(v, int) or v <= 0 or v % multiple for v in condition_size
            ):
                raise ValueError(
                    f"`condition_size` has to be (height, width), multiples of {multiple}, but is {condition_size}"
                )
        if condition_latents is not None and not isinstance(condition_latents, ConditionLatents):
            raise ValueError(
                f"`condition_latents` has to be a ConditionLatents but is {type(condition_latents).__name__}"
            )

    # -- latents and scheduler (CogVideoX's own) --------------------------------------------------------------------
    prepare_latents = CogVideoXPipeline.prepare_latents  # noise [B, F, C, h, w] x the scheduler's init sigma
    decode_latents = CogVideoXPipeline.decode_latents  # [B, F, C, h, w] -> video [B, 3, T, H, W] in [-1, 1]
    prepare_extra_step_kwargs = CogVideoXPipeline.prepare_extra_step_kwargs
    guidance_scale = CogVideoXPipeline.guidance_scale
    num_timesteps = CogVideoXPipeline.num_timesteps
    attention_kwargs = CogVideoXPipeline.attention_kwargs
    current_timestep = CogVideoXPipeline.current_timestep
    interrupt = CogVideoXPipeline.interrupt  # set `pipe._interrupt = True` (e.g. in a step callback) to stop

    # -- call -----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        masks: np.ndarray | MaskSet | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int = 50,
        timesteps: list[int] | None = None,
        guidance_scale: float = 6.0,
        mask_guidance_scale: float = 1.0,
        use_dynamic_cfg: bool = False,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        mask_latents: torch.Tensor | None = None,
        start_image: np.ndarray | None = None,
        previous_frames: np.ndarray | None = None,
        condition_latents: ConditionLatents | None = None,
        condition_size: tuple[int, int] | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable[[Any, int, int, dict], dict]
        | PipelineCallback
        | MultiPipelineCallbacks
        | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        max_sequence_length: int | None = None,
    ) -> MVideoPipelineOutput | tuple:
        """Generate one clip.

        masks: bool [T, H, W] or a MaskSet (its union is used); None = text-only. Size defaults follow the masks.
        guidance_scale: classifier-free guidance on the text (the mask and conditions go to both branches).
        mask_guidance_scale: s_m >= 1 adds (s_m - 1) * (eps(text, mask) - eps(text, no mask)) to the guided
            prediction, pushing the video towards the masks (1 = off; measured in docs/toy-model.md). The text branch
            without the mask joins the guided batch: one transformer pass of batch 3 a step instead of two passes.
        start_image: uint8 [H, W, 3] conditioning clip 0; previous_frames: uint8 [T, H, W, 3], the previous clip.
        Returns frames as np float [B, T, H, W, 3] in [0, 1] by default.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        callback_on_step_end_tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        if isinstance(masks, MaskSet):
            masks = masks.union()  # bool [T, H, W]
        if masks is not None and isinstance(masks, np.ndarray) and masks.ndim == 3:
            num_frames = num_frames or masks.shape[0]
            height = height or masks.shape[1]
            width = width or masks.shape[2]
        if previous_frames is not None and isinstance(previous_frames, np.ndarray) and previous_frames.ndim == 4:
            height = height or previous_frames.shape[1]
            width = width or previous_frames.shape[2]
        s = self.vae_scale_factor_spatial
        height = height or self.transformer.config.sample_height * s
        width = width or self.transformer.config.sample_width * s
        num_frames = num_frames or 33
        max_sequence_length = max_sequence_length or self.transformer.config.max_text_seq_length

        # 1. Check inputs
        self.check_inputs(
            prompt,
            height,
            width,
            num_frames,
            negative_prompt,
            callback_on_step_end_tensor_inputs,
            prompt_embeds,
            negative_prompt_embeds,
            masks,
            mask_latents,
            start_image,
            previous_frames,
            condition_latents,
            condition_size,
            output_type,
            num_inference_steps,
            mask_guidance_scale,
            latents,
        )
        self._guidance_scale = guidance_scale
        self._attention_kwargs = attention_kwargs
        self._current_timestep = None
        self._interrupt = False

        # 2. Default call parameters
        if isinstance(prompt, str):
            batch_size = 1
        elif isinstance(prompt, list):
            batch_size = len(prompt)
        else:
            batch_size = prompt_embeds.shape[0]
        device = self._execution_device
        do_classifier_free_guidance = guidance_scale > 1.0

        # 3. Encode the prompt (guidance on the text only)
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt,
            negative_prompt,
            do_classifier_free_guidance,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            max_sequence_length=max_sequence_length,
            device=device,
            dtype=self.transformer.dtype,
        )
        if do_classifier_free_guidance:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds], dim=0)  # [2B, L, D]

        # 4. Encode the mask and the long-video conditions with the frozen VAE
        dtype = self.transformer.dtype
        if masks is not None:
            mask_latents = self.encode_masks(masks).repeat(batch_size, 1, 1, 1, 1)  # [B, F, C, h, w]
        if mask_latents is not None:
            mask_latents = mask_latents.to(device=device, dtype=dtype)
        if condition_latents is None and (start_image is not None or previous_frames is not None):
            condition_latents = self.encode_conditions(previous_frames, start_image, condition_size)
        if condition_latents is not None and not condition_latents.is_empty:
            if condition_latents.batch_size == 1 and batch_size > 1:
                condition_latents = condition_latents.repeat(batch_size)
            condition_latents = condition_latents.to(device=device, dtype=dtype)
        else:
            condition_latents = None

        # 5. Prepare timesteps
        timesteps, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device, timesteps)
        self._num_timesteps = len(timesteps)

        # 6. Prepare latents: [B, F, C, h, w]
        latents = self.prepare_latents(
            batch_size,
            self.transformer.config.in_channels,
            num_frames,
            height,
            width,
            dtype,
            device,
            generator,
            latents,
        )
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        image_rotary_emb = None
        if self.transformer.config.use_rotary_positional_embeddings:
            p = self.transformer.config.patch_size
            image_rotary_emb = self.transformer.rotary_embeddings(
                latents.shape[1], latents.shape[3] // p, latents.shape[4] // p, device
            )
        # One transformer pass a step over the branches stacked on the batch axis: [uncond, text] with the mask and
        # conditions in both (classifier-free guidance on the text only), then [text without the mask] when mask
        # guidance is on. Zero mask latents are exactly "no mask" (`mask_proj` has no bias).
        n_branches = 2 if do_classifier_free_guidance else 1
        mask_branch = mask_guidance_scale != 1.0
        mask_input = None
        if mask_latents is not None:
            mask_input = torch.cat([mask_latents] * n_branches + [torch.zeros_like(mask_latents)] * mask_branch)
        # The condition stream runs once per clip, in the first step's pass (where CPU offload has placed the model);
        # every branch and step shares its keys/values.
        cond_input = None if condition_latents is None else ConditionCache.deferred(condition_latents)

        def predict(hidden_states, text_embeds, timestep, mask):
            return self.transformer(
                hidden_states=hidden_states,
                encoder_hidden_states=text_embeds,
                timestep=timestep,
                image_rotary_emb=image_rotary_emb,
                attention_kwargs=attention_kwargs,
                return_dict=False,
                mask_latents=mask,
                condition_latents=cond_input,
            )[0].float()

        # 7. Denoising loop
        num_warmup_steps = max(len(timesteps) - num_inference_steps * self.scheduler.order, 0)
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            old_pred_original_sample = None
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                self._current_timestep = t
                b = batch_size
                latent_model_input = torch.cat([latents] * (n_branches + mask_branch))  # [(2 | 1) (+1) B, F, C, H, W]
                latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
                timestep = t.expand(latent_model_input.shape[0])
                text_input = torch.cat([prompt_embeds, prompt_embeds[-b:]]) if mask_branch else prompt_embeds
                noise_pred = predict(latent_model_input, text_input, timestep, mask_input)

                if use_dynamic_cfg:  # as CogVideoX: the scale grows from 1 over the steps
                    self._guidance_scale = 1 + guidance_scale * (
                        (1 - math.cos(math.pi * ((num_inference_steps - t.item()) / num_inference_steps) ** 5.0)) / 2
                    )
                if mask_branch:  # (s - 1) * (eps(text, mask) - eps(text, no mask))
                    noise_pred, no_mask = noise_pred[:-b], noise_pred[-b:]
                    mask_push = (mask_guidance_scale - 1.0) * (noise_pred[-b:] - no_mask)
                if do_classifier_free_guidance:
                    noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                    noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)
                if mask_branch:
                    noise_pred = noise_pred + mask_push

                if not isinstance(self.scheduler, CogVideoXDPMScheduler):
                    latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]
                else:
                    latents, old_pred_original_sample = self.scheduler.step(
                        noise_pred,
                        old_pred_original_sample,
                        t,
                        timesteps[i - 1] if i > 0 else None,
                        latents,
                        **extra_step_kwargs,
                        return_dict=False,
                    )
                latents = latents.to(dtype)

                if callback_on_step_end is not None:
                    callback_kwargs = {}
                    for k in callback_on_step_end_tensor_inputs:
                        callback_kwargs[k] = locals()[k]
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                    latents = callback_outputs.pop("latents", latents)
                    prompt_embeds = callback_outputs.pop("prompt_embeds", prompt_embeds)
                    negative_prompt_embeds = callback_outputs.pop("negative_prompt_embeds", negative_prompt_embeds)

                if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % self.scheduler.order == 0):
                    progress_bar.update()
        self._current_timestep = None

        # 8. Decode
        if output_type == "latent":
            video = latents
        else:
            video = self.decode_latents(latents.to(self.vae.dtype))  # [B, 3, T, H, W]
            video = self.video_processor.postprocess_video(video=video, output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (video,)
        return MVideoPipelineOutput(frames=video)
