"""The toy model's components, built from `ToyConfig`: tokenizer (the world's words), frozen random tiny T5, tiny
CogVideoX VAE and transformer, DDIM scheduler as CogVideoX-2b ships it; `write_base_folder` lays them out like a
CogVideoX checkout so every later step goes through the production loading code."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

from mvideo_core.tiny import word_tokenizer
from research.toy.config import ToyConfig
from research.toy.world import caption_words

TOY_MARKER = "TOY_MODEL.txt"


def toy_tokenizer(config: ToyConfig) -> PreTrainedTokenizerFast:
    """Word-level tokenizer over the toy world's caption words, with T5's special tokens, padded to text_length."""
    return word_tokenizer(caption_words(), config.text_length)


def toy_text_encoder(config: ToyConfig) -> T5EncoderModel:
    """A frozen random one-layer T5 encoder: distinct words give distinct embeddings, which is all the toy needs."""
    torch.manual_seed(config.seed + 11)
    t5 = T5Config(
        vocab_size=len(toy_tokenizer(config).get_vocab()),
        d_model=config.text_dim,
        d_kv=16,
        d_ff=64,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
        is_encoder_decoder=False,
        use_cache=False,
    )
    return T5EncoderModel(t5).eval()


def spatial_factor(config: ToyConfig) -> int:
    """The VAE's spatial compression: 2 per down block but the last (CogVideoX's VAE: 4 blocks, 8x)."""
    return 2 ** (len(config.vae_blocks) - 1)


def toy_vae(config: ToyConfig) -> AutoencoderKLCogVideoX:
    """Tiny CogVideoX VAE: `spatial_factor` spatial (4x with 3 blocks), 4x temporal compression (the first two
    blocks compress time, as in CogVideoX), `latent_channels` channels."""
    torch.manual_seed(config.seed + 12)
    blocks = tuple(config.vae_blocks)
    return AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * len(blocks),
        up_block_types=("CogVideoXUpBlock3D",) * len(blocks),
        block_out_channels=blocks,
        latent_channels=config.latent_channels,
        layers_per_block=1,
        norm_num_groups=4,
        temporal_compression_ratio=4,
        sample_height=config.height,
        sample_width=config.width,
    )


def toy_transformer(config: ToyConfig) -> CogVideoXTransformer3DModel:
    """Tiny CogVideoX-2b-style transformer (sincos positions) for 33 x 64 x 96 clips."""
    torch.manual_seed(config.seed + 13)
    return CogVideoXTransformer3DModel(
        num_attention_heads=config.num_heads,
        attention_head_dim=config.head_dim,
        in_channels=config.latent_channels,
        out_channels=config.latent_channels,
        time_embed_dim=config.time_embed_dim,
        text_embed_dim=config.text_dim,
        num_layers=config.num_layers,
        sample_width=config.width // spatial_factor(config),
        sample_height=config.height // spatial_factor(config),
        sample_frames=config.num_frames,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=config.text_length,
        use_rotary_positional_embeddings=False,
    )


def toy_scheduler() -> CogVideoXDDIMScheduler:
    """CogVideoX-2b's scheduler settings (v-prediction, zero terminal SNR, trailing spacing)."""
    return CogVideoXDDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        set_alpha_to_one=True,
        timestep_spacing="trailing",
        snr_shift_scale=3.0,
    )


def write_base_folder(
    path: str | Path,
    config: ToyConfig,
    vae: AutoencoderKLCogVideoX,
    transformer: CogVideoXTransformer3DModel,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """A CogVideoX-layout folder (transformer/, vae/, text_encoder/, tokenizer/, scheduler/, model_index.json)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    transformer.to(dtype).save_pretrained(path / "transformer", safe_serialization=True)
    transformer.float()
    vae.to(dtype).save_pretrained(path / "vae", safe_serialization=True)
    vae.float()
    toy_text_encoder(config).to(dtype).save_pretrained(path / "text_encoder", safe_serialization=True)
    toy_tokenizer(config).save_pretrained(path / "tokenizer")
    toy_scheduler().save_pretrained(path / "scheduler")
    model_index = {
        "_class_name": "CogVideoXPipeline",
        "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", "CogVideoXDDIMScheduler"],
        "text_encoder": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "transformer": ["diffusers", "CogVideoXTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLCogVideoX"],
    }
    (path / "model_index.json").write_text(json.dumps(model_index, indent=2))
    (path / TOY_MARKER).write_text(
        "Toy CogVideoX-architecture model trained on CPU by `python -m research.toy` on procedural coloured "
        "shapes at 64x96 (see docs/toy-model.md). It only knows that world.\n"
    )
    return path


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


@torch.no_grad()
def reconstruct(vae, frames: np.ndarray) -> np.ndarray:
    """Encode (posterior mode) and decode uint8 frames [T, H, W, 3] -> uint8 [T, H, W, 3]."""
    from mvideo_core.training.precompute import frames_to_tensor

    z = vae.encode(frames_to_tensor(frames)).latent_dist.mode()
    x = vae.decode(z).sample  # [1, 3, T, H, W]
    x = ((x[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round()
    return x.to(torch.uint8).numpy()
