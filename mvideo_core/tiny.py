"""Tiny random-weight CogVideoX components for tests, demos and the studio's `--tiny-random` mode.

Named configs live in one registry (`TINY_CONFIGS`). Everything is built offline from configs: no hub, no files.
`save_tiny_base_model(path)` writes a whole base model folder in the diffusers layout (transformer/, vae/,
text_encoder/, tokenizer/, scheduler/, model_index.json) that the production loading code reads like a real
CogVideoX checkout. Sizes: 64x96 pixels -> 8x12 latents (8x spatial, 4x temporal, 4 latent channels).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKLCogVideoX,
    CogVideoXDDIMScheduler,
    CogVideoXDPMScheduler,
    CogVideoXTransformer3DModel,
)
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

# Latent channels of the tiny VAE; the tiny transformers take as many (mask channels too).
TINY_LATENT_CHANNELS = 4
# Text tokens seen by the tiny transformer (CogVideoX uses 226); the tokenizer pads to it.
TINY_TEXT_LENGTH = 16
TINY_TEXT_DIM = 16
# Pixel size and frame count the tiny configs are made for (33 frames work as well; any multiple of 16 px does).
TINY_HEIGHT, TINY_WIDTH, TINY_FRAMES = 64, 96, 9

_TRANSFORMER_COMMON: dict[str, Any] = {
    "num_attention_heads": 4,
    "attention_head_dim": 16,
    "in_channels": TINY_LATENT_CHANNELS,
    "out_channels": TINY_LATENT_CHANNELS,
    "time_embed_dim": 32,
    "text_embed_dim": TINY_TEXT_DIM,
    "num_layers": 2,
    "sample_width": TINY_WIDTH // 8,
    "sample_height": TINY_HEIGHT // 8,
    "sample_frames": TINY_FRAMES,
    "patch_size": 2,
    "temporal_compression_ratio": 4,
    "max_text_seq_length": TINY_TEXT_LENGTH,
}

# The registry: name -> transformer config, scheduler class. "2b" = sincos positions, "5b" = 3D RoPE.
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "2b": {
        "transformer": {**_TRANSFORMER_COMMON, "use_rotary_positional_embeddings": False},
        "scheduler": "ddim",
    },
    "5b": {
        "transformer": {
            **_TRANSFORMER_COMMON,
            "use_rotary_positional_embeddings": True,
            "attention_bias": True,
            "flip_sin_to_cos": True,
        },
        "scheduler": "dpm",
    },
}

TINY_VAE_CONFIG: dict[str, Any] = {
    "block_out_channels": (4, 4, 4, 4),
    "latent_channels": TINY_LATENT_CHANNELS,
    "layers_per_block": 1,
    "norm_num_groups": 2,
    "temporal_compression_ratio": 4,
    "sample_height": TINY_HEIGHT,
    "sample_width": TINY_WIDTH,
}

TINY_T5_CONFIG: dict[str, Any] = {
    "d_model": TINY_TEXT_DIM,
    "d_kv": 8,
    "d_ff": 32,
    "num_layers": 1,
    "num_heads": 2,
    "relative_attention_num_buckets": 8,
    "dropout_rate": 0.0,
    "is_encoder_decoder": False,
    "use_cache": False,
}

# A small English vocabulary so prompts tokenize to different ids; anything else maps to <unk>.
TINY_WORDS = (
    "a an the of on in at with and to is are doing person man woman dog cat horse car bird astronaut moon "
    "beach street park field sky sea snow forest city room backflip running walking jumping dancing riding "
    "red blue green white black big small slowly fast camera zoom uphill video"
).split()


def _scheduler_config(kind: str) -> dict[str, Any]:
    # As in the CogVideoX checkpoints' scheduler_config.json (v-prediction, zero-SNR, trailing spacing).
    return {
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "clip_sample": False,
        "num_train_timesteps": 1000,
        "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": True,
        "set_alpha_to_one": True,
        "timestep_spacing": "trailing",
        "snr_shift_scale": 3.0 if kind == "ddim" else 1.0,
    }


def _check_name(name: str) -> dict[str, Any]:
    if name not in TINY_CONFIGS:
        raise ValueError(f"unknown tiny config {name!r}; choose one of {sorted(TINY_CONFIGS)}")
    return TINY_CONFIGS[name]


def tiny_transformer(name: str = "2b", seed: int = 0) -> CogVideoXTransformer3DModel:
    """A tiny random CogVideoX transformer: "2b" (sincos positions) or "5b" (3D RoPE)."""
    cfg = _check_name(name)
    torch.manual_seed(seed)
    return CogVideoXTransformer3DModel(**cfg["transformer"]).eval()


def tiny_vae(seed: int = 0) -> AutoencoderKLCogVideoX:
    """A tiny random CogVideoX VAE (8x spatial, 4x temporal, 4 latent channels)."""
    torch.manual_seed(seed)
    return AutoencoderKLCogVideoX(**TINY_VAE_CONFIG).eval()


def tiny_text_encoder(seed: int = 0) -> T5EncoderModel:
    """A tiny random T5 encoder whose vocabulary matches `tiny_tokenizer()`."""
    torch.manual_seed(seed)
    vocab = len(tiny_tokenizer().get_vocab())
    return T5EncoderModel(T5Config(vocab_size=vocab, **TINY_T5_CONFIG)).eval()


def word_tokenizer(words: Iterable[str], max_length: int) -> PreTrainedTokenizerFast:
    """An offline word-level tokenizer over `words` with T5's special tokens (`T5Tokenizer(vocab_file)` in
    transformers 5 maps every word to <unk>, so tiny and toy models use this instead)."""
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in words:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=max_length,
        padding_side="right",
    )


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny models' offline tokenizer over `TINY_WORDS`."""
    return word_tokenizer(TINY_WORDS, TINY_TEXT_LENGTH)


def tiny_scheduler(name: str = "2b") -> CogVideoXDDIMScheduler | CogVideoXDPMScheduler:
    """The scheduler the named config ships with (DDIM for 2b, DPM for 5b, as CogVideoX does)."""
    kind = _check_name(name)["scheduler"]
    cls = CogVideoXDDIMScheduler if kind == "ddim" else CogVideoXDPMScheduler
    return cls(**_scheduler_config(kind))


def save_tiny_base_model(path: str | Path, name: str = "2b", seed: int = 0) -> Path:
    """Write a whole tiny random base model folder in the diffusers CogVideoX layout; returns the folder.

    The folder loads like a real `THUDM/CogVideoX-2b` checkout (safetensors only), so tests exercise the production
    loading code through it.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tiny_transformer(name, seed).save_pretrained(path / "transformer", safe_serialization=True)
    tiny_vae(seed).save_pretrained(path / "vae", safe_serialization=True)
    tiny_text_encoder(seed).save_pretrained(path / "text_encoder", safe_serialization=True)
    tiny_tokenizer().save_pretrained(path / "tokenizer")
    scheduler = tiny_scheduler(name)
    scheduler.save_pretrained(path / "scheduler")
    model_index = {
        "_class_name": "CogVideoXPipeline",
        "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", type(scheduler).__name__],
        "text_encoder": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "transformer": ["diffusers", "CogVideoXTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLCogVideoX"],
    }
    (path / "model_index.json").write_text(json.dumps(model_index, indent=2))
    (path / "TINY_RANDOM.txt").write_text(
        f"Tiny random-weight CogVideoX ({name}-style) made by mvideo_core.tiny for tests and demos; "
        "it generates noise-like video, not real content.\n"
    )
    return path


def tiny_pipeline(name: str = "2b", seed: int = 0, progress: bool = False):
    """A ready in-memory `MVideoPipeline` on tiny random components (fresh MVideo modules: base behaviour)."""
    from mvideo_core.pipeline_mvideo import MVideoPipeline
    from mvideo_core.transformer import MVideoTransformer3DModel

    transformer = MVideoTransformer3DModel.from_cogvideox(tiny_transformer(name, seed))
    pipe = MVideoPipeline(tiny_tokenizer(), tiny_text_encoder(seed), tiny_vae(seed), transformer, tiny_scheduler(name))
    pipe.set_progress_bar_config(disable=not progress)
    return pipe
