"""Sizes of the toy model and of each training stage, in one typed object (JSON-saveable, checked on resume)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ToyConfig:
    """The toy MVideo: a tiny CogVideoX (2b-style sincos positions) at 64x96, 33 frames at 8 fps."""

    # -- geometry ------------------------------------------------------------------------------------------------
    height: int = 64
    width: int = 96
    num_frames: int = 33
    condition_height: int = 32  # default_condition_size(64, 96): the paper's 256x384 scaled like 480x720 -> 64x96
    condition_width: int = 48

    # -- model -----------------------------------------------------------------------------------------------------
    # 3 blocks: 4x spatial compression (latents 16x24; the subjects, ~20 px wide, span 5 latent pixels, not 2).
    # v3: wider blocks and 16 latent channels (as CogVideoX): v2's (16, 32, 64) x 8 blurred outlines (VAE ceiling 0.24)
    vae_blocks: tuple[int, ...] = (32, 64, 96)
    latent_channels: int = 16
    text_dim: int = 32
    text_length: int = 16
    num_layers: int = 4
    num_heads: int = 4
    head_dim: int = 32
    time_embed_dim: int = 64

    # -- stage 1: VAE on short snippets (it is causal and convolutional) ---------------------------------------------
    vae_steps: int = 6000  # v4: 6000 (0.51 s a step on 2 cores: 52 min)
    vae_batch: int = 4
    vae_snippet_frames: int = 9
    vae_crop: tuple[int, int] = (32, 48)
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-6
    vae_subject_weight: float = 8.0  # loss weight of subject pixels (small, but their colour is what captions name)
    # weight of the loss on the frame-to-frame change of the reconstruction error: the VAE otherwise averages a moving
    # subject over the 4 frames of a latent frame (v3's temporal smear; 0 = v3's loss). v4: 5 (side by side at 6000
    # steps, held-out VAE ceiling 0: 0.47, 2: 0.63, 5: 0.67, 10: 0.68 with PSNR falling past 5)
    vae_temporal_weight: float = 5.0
    # "bf16": the VAE's forward passes run under bfloat16 autocast (weights, optimizer and loss stay fp32): 0.31 s a step
    # instead of 0.48 on 2 cores with AVX512-BF16, measured side by side; "fp32" is what the shipped VAE was trained in
    vae_precision: str = "fp32"

    # -- data ------------------------------------------------------------------------------------------------------
    base_clips: int = 400
    mask_clips: int = 200
    # mask-data captions name no motion: the path must come from the masks (True: the ablation with motion words)
    mask_caption_motion: bool = False
    mask_long_fraction: float = 1.0  # mask-to-video clips of 65 frames: their last 4 s carry long-video conditions

    # -- stage 2: base text-to-video (full training of the tiny transformer) ------------------------------------------
    base_steps: int = 4000
    base_batch: int = 4
    base_lr: float = 1e-3
    text_dropout: float = 0.1  # empty prompt with this probability: classifier-free guidance works

    # -- stage 3: MVideo (the project's trainer: LoRA + mask input + consistency loss) -----------------------------------
    mvideo_steps: int = 2500
    mvideo_batch: int = 4
    mvideo_lr: float = 1e-3
    lora_rank: int = 32
    condition_dropout: float = 0.3  # first-clip steps (the trainer's batches carry conditions only when all do)
    # what the student sees in L_c (TrainConfig.consistency_inputs): "masked" as the paper is written (v1-v4), or
    # "unmasked" (a text-only student pass is held to the teacher; the masked prediction is left to L_d). v5:
    # unmasked (side by side, same base: held-out mask mIoU 0.28 -> 0.48, text only 0.33 -> 0.47)
    consistency_inputs: str = "unmasked"
    # alpha of the `mvideo` stage (L = L_d + alpha * L_c; the paper: 1); the `mvideo-a0` stage is always alpha = 0.
    # v6: 5 (side by side with v5's 1, same base: text only 0.47 -> 0.80 on 15 prompts; on 45: 0.69 vs base 0.71;
    # held-out mask mIoU 0.48 -> 0.44, scored with the classic tracker before its box retry)
    consistency_weight: float = 5.0

    # -- evaluation --------------------------------------------------------------------------------------------------
    # v8: 48 (12 drew 9 rings and 3 crosses for the held-out split; a clip costs ~2 s to generate on 2 cores)
    eval_clips: int = 48
    text_clips: int = 45  # v6: 45 (15 prompts left the "near base" verdict to one prompt)
    long_clips: int = 12  # v5: 12 (v4's 3 sequences moved the gap by 0.03 between runs)
    inference_steps: int = 20
    guidance_scale: float = 4.0
    # the pipeline's mask guidance (1 = off) for every generation given masks; v8's figures are at 1
    mask_guidance_scale: float = 1.0

    checkpoint_every: int = 50
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.consistency_weight, (int, float)) or not self.consistency_weight > 0:
            raise ValueError(
                f"consistency_weight (alpha of the mvideo stage) must be a number > 0, got {self.consistency_weight!r}; "
                "the alpha = 0 model is the mvideo-a0 stage"
            )
        if self.vae_precision not in ("fp32", "bf16"):
            raise ValueError(f"vae_precision must be 'fp32' or 'bf16', got {self.vae_precision!r}")
        m = self.mask_guidance_scale
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or m < 1:
            raise ValueError(f"mask_guidance_scale must be a number >= 1 (1 = off), got {m!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ToyConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown toy config keys {unknown}; known: {sorted(known)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**values)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ToyConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def scaled(self, factor: float) -> ToyConfig:
        """The same config with every step and clip count multiplied by `factor` (smoke runs use ~0.01)."""
        out = dataclasses.replace(self)
        for name in ("vae_steps", "base_steps", "mvideo_steps", "base_clips", "mask_clips"):
            setattr(out, name, max(2, int(round(getattr(self, name) * factor))))
        for name in ("eval_clips", "text_clips", "long_clips"):
            setattr(out, name, max(1, int(round(getattr(self, name) * factor))))
        out.checkpoint_every = max(1, int(round(self.checkpoint_every * factor)))
        return out
