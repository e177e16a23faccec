"""Reads the latent cache written by `precompute`: one sample = latents, mask latents, text and conditions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch.utils.data import Dataset, Sampler

from mvideo_core.training.precompute import CacheError, CacheGeometry, model_identity, read_cache_index

TENSOR_NAMES = ("latents", "mask_latents", "prompt_embeds", "appearance", "motion")


class LatentCacheDataset(Dataset):
    """The samples of a cache folder, sorted by clip id. `geometry` (from the training config) must match the cache."""

    def __init__(self, cache_dir: str | Path, geometry: CacheGeometry | None = None, base_model: str | None = None):
        self.cache_dir = Path(cache_dir)
        self.header, self.samples = read_cache_index(self.cache_dir)
        if not self.samples:
            raise CacheError(f"the latent cache in {self.cache_dir} holds no samples; check the precompute log")
        if geometry is not None and self.header["geometry"] != geometry.__dict__:
            diff = {
                k: (self.header["geometry"].get(k), v)
                for k, v in geometry.__dict__.items()
                if self.header["geometry"].get(k) != v
            }
            raise CacheError(
                f"the latent cache in {self.cache_dir} was built for another geometry (cache, config): {diff}; "
                "rerun precompute with this config into a new cache_dir"
            )
        if base_model is not None and self.header["base_model"] != model_identity(base_model):
            raise CacheError(
                f"the latent cache was encoded with {self.header['base_model']!r}, the config trains {base_model!r}; "
                "latents of another VAE/T5 do not fit: rerun precompute"
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        out: dict[str, Any] = {"clip_id": sample["clip_id"]}
        with safe_open(str(self.cache_dir / sample["file"]), framework="pt") as handle:
            keys = set(handle.keys())
            for name in TENSOR_NAMES:
                key = f"{sample['key']}.{name}"
                if key in keys:
                    out[name] = handle.get_tensor(key)
        for name in ("latents", "mask_latents", "prompt_embeds"):
            if name not in out:
                raise CacheError(f"{sample['file']} lacks {sample['key']}.{name}; rerun precompute on that clip")
        return out


def collate_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a batch: latents/mask_latents [B, F, C, H, W], prompt_embeds [B, L, D]; the conditions
    (appearance [B, 1, C, H, W], motion [B, Fc, C, h, w]) only when every sample of the batch has them."""
    batch: dict[str, Any] = {"clip_id": [s["clip_id"] for s in samples]}
    for name in ("latents", "mask_latents", "prompt_embeds"):
        batch[name] = torch.stack([s[name] for s in samples])
    for name in ("appearance", "motion"):
        if all(name in s for s in samples):
            batch[name] = torch.stack([s[name] for s in samples])
    return batch


class EpochSampler(Sampler[int]):
    """A fresh permutation per epoch from (seed, epoch): the order is a pure function of the step, so a resumed run
    sees the same batches as an uninterrupted one."""

    def __init__(self, length: int, seed: int = 0):
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())

    def __len__(self) -> int:
        return self.length
