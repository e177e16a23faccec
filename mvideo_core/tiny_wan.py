"""Tiny random-weight Wan2.1-VACE components for tests, benches and `--engine vace --tiny-random`.

The Wan counterpart of `mvideo_core.tiny`: everything is built offline from the configs below (no hub, no files), and
`save_tiny_vace_model(path)` writes a whole model folder in the layout of `Wan-AI/Wan2.1-VACE-1.3B-diffusers`
(transformer/, vae/, text_encoder/, tokenizer/, scheduler/, model_index.json, safetensors only) so tests go through
the same loading code as the real checkpoint. Sizes: 8x spatial and 4x temporal VAE compression, 16 latent channels,
2x2 patches, so any multiple of 16 px works; 81 frames (Wan's clip) -> 21 latent frames.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanVACEPipeline, WanVACETransformer3DModel
from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from mvideo_core.tiny import TINY_WORDS, word_tokenizer

# Text tokens the tiny models see (Wan uses 512); the tokenizer pads to it.
TINY_WAN_TEXT_LENGTH = 16
TINY_WAN_TEXT_DIM = 32
# Pixel size the tiny configs are made for (any multiple of 16 px works; 64x96 -> 8x12 latents -> 4x6 patches).
TINY_WAN_HEIGHT, TINY_WAN_WIDTH = 64, 96

# The 1.3B checkpoint's shape, shrunk: 2 heads x 12 (1.3B: 12 x 128), 3 layers (30) with VACE blocks on 0 and 2
# (every second layer, as in 1.3B), 96 VACE in-channels (16 inactive + 16 reactive latents + 64 mask channels).
TINY_WAN_TRANSFORMER_CONFIG: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": TINY_WAN_TEXT_DIM,
    "freq_dim": 256,
    "ffn_dim": 32,
    "num_layers": 3,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "rope_max_seq_len": 32,
    "vace_layers": [0, 2],
    "vace_in_channels": 96,
}

TINY_WAN_VAE_CONFIG: dict[str, Any] = {
    "base_dim": 3,
    "z_dim": 16,
    "dim_mult": [1, 1, 1, 1],
    "num_res_blocks": 1,
    "temperal_downsample": [False, True, True],
}

TINY_UMT5_CONFIG: dict[str, Any] = {
    "d_model": TINY_WAN_TEXT_DIM,
    "d_kv": 8,
    "d_ff": 32,
    "num_layers": 1,
    "num_heads": 2,
    "relative_attention_num_buckets": 8,
    "dropout_rate": 0.0,
    "is_encoder_decoder": False,
    "use_cache": False,
}

# As in the 1.3B checkpoint's scheduler_config.json (flow matching, UniPC), with the 480p flow shift.
TINY_WAN_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "prediction_type": "flow_prediction",
    "use_flow_sigmas": True,
    "flow_shift": 3.0,
}


def tiny_wan_transformer(seed: int = 0) -> WanVACETransformer3DModel:
    """A tiny random Wan VACE transformer (3 layers, VACE blocks on layers 0 and 2)."""
    torch.manual_seed(seed)
    return WanVACETransformer3DModel(**TINY_WAN_TRANSFORMER_CONFIG).eval()


def tiny_wan_vae(seed: int = 0) -> AutoencoderKLWan:
    """A tiny random Wan VAE (8x spatial, 4x temporal, 16 latent channels)."""
    torch.manual_seed(seed)
    return AutoencoderKLWan(**TINY_WAN_VAE_CONFIG).eval()


def tiny_wan_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny Wan models' offline word-level tokenizer (the tiny CogVideoX vocabulary, 16 tokens)."""
    return word_tokenizer(TINY_WORDS, TINY_WAN_TEXT_LENGTH)


def tiny_wan_text_encoder(seed: int = 0) -> UMT5EncoderModel:
    """A tiny random UMT5 encoder whose vocabulary matches `tiny_wan_tokenizer()`."""
    torch.manual_seed(seed)
    vocab = len(tiny_wan_tokenizer().get_vocab())
    return UMT5EncoderModel(UMT5Config(vocab_size=vocab, **TINY_UMT5_CONFIG)).eval()


def tiny_wan_scheduler() -> UniPCMultistepScheduler:
    """Wan's flow-matching UniPC scheduler."""
    return UniPCMultistepScheduler(**TINY_WAN_SCHEDULER_CONFIG)


def tiny_vace_pipeline(seed: int = 0, progress: bool = False) -> WanVACEPipeline:
    """A ready in-memory `WanVACEPipeline` on tiny random components."""
    pipe = WanVACEPipeline(
        tokenizer=tiny_wan_tokenizer(),
        text_encoder=tiny_wan_text_encoder(seed),
        vae=tiny_wan_vae(seed),
        scheduler=tiny_wan_scheduler(),
        transformer=tiny_wan_transformer(seed),
    )
    pipe.set_progress_bar_config(disable=not progress)
    return pipe


def save_tiny_vace_model(path: str | Path, seed: int = 0) -> Path:
    """Write a whole tiny random Wan VACE folder in the layout of `Wan-AI/Wan2.1-VACE-1.3B-diffusers`; returns it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tiny_wan_transformer(seed).save_pretrained(path / "transformer", safe_serialization=True)
    tiny_wan_vae(seed).save_pretrained(path / "vae", safe_serialization=True)
    tiny_wan_text_encoder(seed).save_pretrained(path / "text_encoder", safe_serialization=True)
    tiny_wan_tokenizer().save_pretrained(path / "tokenizer")
    tiny_wan_scheduler().save_pretrained(path / "scheduler")
    model_index = {
        "_class_name": "WanVACEPipeline",
        "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", "UniPCMultistepScheduler"],
        "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "transformer": ["diffusers", "WanVACETransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLWan"],
    }
    (path / "model_index.json").write_text(json.dumps(model_index, indent=2))
    (path / "TINY_RANDOM.txt").write_text(
        "Tiny random-weight Wan2.1-VACE made by mvideo_core.tiny_wan for tests and demos; "
        "it generates noise-like video, not real content.\n"
    )
    return path
