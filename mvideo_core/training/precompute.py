"""The latent cache: everything the trainer needs from a manifest, VAE- and T5-encoded once, as safetensors shards.

Per clip of the manifest one training sample: the target window is the clip's last `num_frames` frames (4 s at
8 fps); when frames precede it, the two long-video conditions of paper 3.3 come from them, cut as `long_video`
generates (clips overlap by one frame): the full-resolution frame where the window starts (appearance = the previous
clip's last frame) and the `condition_frames` frames ending there at 256x384 (motion; the clip's first frame repeats
where the clip is shorter). The mask condition is the union of the clip's masks over the window, as a
3-channel video in [-1, 1]. Text is the T5 embedding of the caption.

    python -m mvideo_core.training.precompute --config train.yaml --manifest DATASET_DIR [--device cuda]
    accelerate launch -m mvideo_core.training.precompute ...      # one shard of the manifest per process

Reruns skip clips already cached. The folder holds `index-<shard>.json` and `latents-<shard>-<k>.safetensors`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from mvideo_core import cli_args
from mvideo_core.training.config import TrainConfig
from mvideo_core.training.manifest import ClipRecord, read_manifest, shard_of

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
GEOMETRY_KEYS = ("height", "width", "fps", "num_frames", "condition_height", "condition_width", "condition_frames")


class CacheError(ValueError):
    """The latent cache is missing, malformed or was built for another geometry; the message says what to do."""


@dataclass
class CacheGeometry:
    """Pixel geometry of the samples in a cache (checked against the training config)."""

    height: int
    width: int
    fps: float
    num_frames: int
    condition_height: int
    condition_width: int
    condition_frames: int

    @classmethod
    def from_config(cls, config: TrainConfig) -> CacheGeometry:
        return cls(**{k: getattr(config, k) for k in GEOMETRY_KEYS})


def model_identity(base_model: str) -> str:
    """How a cache names the model that encoded it: a local folder by its resolved path, else the hub id."""
    path = Path(base_model).expanduser()
    return str(path.resolve()) if path.exists() else str(base_model)


# -- encoders -------------------------------------------------------------------------------------------------------


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float [1, 3, T, H, W] in [-1, 1] (the VAE's input layout)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div(127.5).sub(1.0)  # [T, H, W, 3]
    return x.permute(3, 0, 1, 2).unsqueeze(0)


def masks_to_tensor(masks: np.ndarray) -> torch.Tensor:
    """bool [T, H, W] -> float [1, 3, T, H, W] in {-1, 1}: the mask video the VAE encodes as the motion condition."""
    x = torch.from_numpy(np.ascontiguousarray(masks)).float().mul(2.0).sub(1.0)  # [T, H, W]
    return x.unsqueeze(0).unsqueeze(0).expand(1, 3, *x.shape).contiguous()


@torch.no_grad()
def encode_video(vae, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """[1, 3, T, H, W] in [-1, 1] -> scaled latents [1, F, C, h, w] (F = (T - 1) // 4 + 1)."""
    param = next(vae.parameters())
    dist = vae.encode(video.to(param.device, param.dtype)).latent_dist
    latents = dist.sample(generator=generator) * vae.config.scaling_factor  # [1, C, F, h, w]
    return latents.permute(0, 2, 1, 3, 4).contiguous()


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str], max_length: int) -> torch.Tensor:
    """T5 embeddings [B, max_length, D], padded and truncated as CogVideoX's pipeline does."""
    ids = tokenizer(
        prompts,
        padding="max_length",
        max_length=max_length,
        truncation=True,
        add_special_tokens=True,
        return_tensors="pt",
    ).input_ids
    param = next(text_encoder.parameters())
    return text_encoder(ids.to(param.device))[0]


# -- sample planning --------------------------------------------------------------------------------------------------


def plan_sample(num_clip_frames: int, geometry: CacheGeometry) -> tuple[int, int | None, list[int] | None]:
    """(first frame s of the target window, appearance frame, motion frames) of a clip, cut exactly as
    `long_video` generates: the window is the clip's last `num_frames` frames; the appearance frame is frame s (the
    previous clip's last frame is the same instant as this clip's first), the motion frames are the
    `condition_frames` frames ending at s, i.e. [s - condition_frames + 1, s + 1) (frame 0 repeats before the clip).
    A window starting at frame 0 is a first clip: no conditions."""
    if num_clip_frames < geometry.num_frames:
        raise CacheError(
            f"the clip has {num_clip_frames} frames, fewer than the {geometry.num_frames} a sample needs; "
            "rebuild the dataset with a longer --min-seconds or train with a smaller num_frames"
        )
    start = num_clip_frames - geometry.num_frames
    if start == 0:
        return 0, None, None
    motion = [max(0, i) for i in range(start - geometry.condition_frames + 1, start + 1)]
    return start, start, motion


def _read_clip(record: ClipRecord, dataset_dir: Path, geometry: CacheGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Frames uint8 [T, H, W, 3] and the mask union bool [T, H, W] of a clip, at the training size."""
    from mvideo_core.masks import load_masks
    from mvideo_core.video_io import read_video, resize_frames, resize_masks

    video = read_video(
        record.source,
        fps=record.fps,
        size=(record.height, record.width),
        fit=record.fit,
        start=record.start,
        end=record.end,
    )
    masks = load_masks(dataset_dir / record.masks).union()  # [T, h, w]
    frames = video.frames
    n = min(len(frames), len(masks))
    if abs(len(frames) - len(masks)) > 1:
        raise CacheError(
            f"clip {record.clip_id}: the source gives {len(frames)} frames but the masks have {len(masks)}; "
            "the source video changed since the dataset was built: rebuild that clip"
        )
    frames, masks = frames[:n], masks[:n]
    size = (geometry.height, geometry.width)
    if frames.shape[1:3] != size:
        frames = resize_frames(frames, size, fit="crop")
    if masks.shape[1:] != size:
        masks = resize_masks(masks, size, fit="crop")
    return frames, masks


def encode_clip(
    record: ClipRecord, dataset_dir: Path, geometry: CacheGeometry, vae, tokenizer, text_encoder, max_text_length: int
) -> dict[str, torch.Tensor]:
    """One training sample's tensors (batch dim dropped): latents, mask_latents, prompt_embeds[, appearance, motion]."""
    from mvideo_core.video_io import resize_frames

    frames, masks = _read_clip(record, dataset_dir, geometry)
    start, appearance_idx, motion_idx = plan_sample(len(frames), geometry)
    window = slice(start, start + geometry.num_frames)
    generator = torch.Generator().manual_seed(zlib.crc32(record.clip_id.encode()))
    sample = {
        "latents": encode_video(vae, frames_to_tensor(frames[window]), generator)[0],  # [F, C, h, w]
        "mask_latents": encode_video(vae, masks_to_tensor(masks[window]), generator)[0],  # [F, C, h, w]
        "prompt_embeds": encode_prompts(tokenizer, text_encoder, [record.caption], max_text_length)[0],  # [L, D]
    }
    if motion_idx is not None:
        appearance = frames[appearance_idx : appearance_idx + 1]
        sample["appearance"] = encode_video(vae, frames_to_tensor(appearance), generator)[0]  # [1, C, h, w]
        low = resize_frames(frames[motion_idx], (geometry.condition_height, geometry.condition_width), fit="crop")
        sample["motion"] = encode_video(vae, frames_to_tensor(low), generator)[0]  # [Fc, C, h', w']
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in sample.items()}


# -- the cache -------------------------------------------------------------------------------------------------------


def read_cache_index(cache_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, samples) over every `index-*.json` of a cache folder; headers must agree."""
    cache_dir = Path(cache_dir)
    files = sorted(cache_dir.glob("index-*.json"))
    if not files:
        raise CacheError(
            f"no latent cache in {cache_dir}: run `python -m mvideo_core.training.precompute --config ... "
            "--manifest DATASET_DIR` first"
        )
    header: dict[str, Any] | None = None
    samples: list[dict[str, Any]] = []
    for file in files:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise CacheError(f"{file} is not valid JSON ({err}); delete it and rerun precompute") from err
        if data.get("version") != CACHE_VERSION:
            raise CacheError(f"{file} has cache version {data.get('version')}, this code reads {CACHE_VERSION}")
        head = {k: data[k] for k in ("geometry", "base_model", "latent_channels", "text_shape")}
        if header is not None and head != header:
            raise CacheError(f"{file} was built with other settings than {files[0]}: {head} vs {header}")
        header = head
        samples.extend(data["samples"])
    samples.sort(key=lambda s: s["clip_id"])
    return header, samples


class CacheWriter:
    """Buffers encoded samples and writes them `shard_size` at a time; the index is rewritten after each shard."""

    def __init__(self, cache_dir: Path, shard_index: int, header: dict[str, Any], shard_size: int = 64):
        self.cache_dir = cache_dir
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.index_path = cache_dir / f"index-{shard_index:05d}.json"
        self.shard_index = shard_index
        self.header = header
        self.shard_size = shard_size
        self.samples: list[dict[str, Any]] = []
        if self.index_path.is_file():
            old = json.loads(self.index_path.read_text(encoding="utf-8"))
            if {k: old.get(k) for k in header} != header:
                raise CacheError(
                    f"{self.index_path} was built with other settings ({ {k: old.get(k) for k in header} }); "
                    f"use a new cache_dir for {header}"
                )
            self.samples = old["samples"]
        self.done = {s["clip_id"] for s in self.samples}
        self.buffer: dict[str, torch.Tensor] = {}
        self.pending: list[dict[str, Any]] = []
        self.next_file = 1 + max((s["file_number"] for s in self.samples), default=-1)

    def add(self, record: ClipRecord, tensors: dict[str, torch.Tensor]) -> None:
        key = f"s{len(self.pending):05d}"
        for name, tensor in tensors.items():
            self.buffer[f"{key}.{name}"] = tensor
        self.pending.append(
            {
                "clip_id": record.clip_id,
                "caption": record.caption,
                "key": key,
                "file_number": self.next_file,
                "has_condition": "motion" in tensors,
            }
        )
        if len(self.pending) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        name = f"latents-{self.shard_index:05d}-{self.next_file:05d}.safetensors"
        save_file(self.buffer, str(self.cache_dir / name))
        for sample in self.pending:
            sample["file"] = name
        self.samples.extend(self.pending)
        self.done.update(s["clip_id"] for s in self.pending)
        data = {"version": CACHE_VERSION, **self.header, "samples": self.samples}
        tmp = self.index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        tmp.replace(self.index_path)
        self.buffer, self.pending = {}, []
        self.next_file += 1


def load_encoders(base_model: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """The VAE, tokenizer and T5 encoder of a CogVideoX folder or hub id (safetensors)."""
    from diffusers import AutoencoderKLCogVideoX
    from transformers import AutoTokenizer, T5EncoderModel

    vae = AutoencoderKLCogVideoX.from_pretrained(base_model, subfolder="vae", torch_dtype=dtype).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(base_model, subfolder="tokenizer")
    text_encoder = T5EncoderModel.from_pretrained(base_model, subfolder="text_encoder", torch_dtype=dtype)
    return vae, tokenizer, text_encoder.to(device).eval()


def max_text_length_of(base_model: str) -> int:
    from diffusers import CogVideoXTransformer3DModel

    return int(CogVideoXTransformer3DModel.load_config(base_model, subfolder="transformer")["max_text_seq_length"])


def precompute_cache(
    config: TrainConfig,
    manifest: str | Path,
    shard_index: int = 0,
    num_shards: int = 1,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    shard_size: int = 64,
    show_progress: bool = True,
    vae_tiling: bool = False,
) -> Path:
    """Encode this shard's clips of `manifest` into `config.cache_dir`; clips already cached are skipped."""
    if not config.cache_dir:
        raise CacheError("`cache_dir` is not set in the training config: where should the latent cache go?")
    manifest = Path(manifest)
    dataset_dir = manifest if manifest.is_dir() else manifest.parent
    records = shard_of(read_manifest(manifest), shard_index, num_shards)
    geometry = CacheGeometry.from_config(config)
    vae, tokenizer, text_encoder = load_encoders(config.base_model, device, dtype)
    if vae_tiling:
        vae.enable_tiling()
    max_text_length = max_text_length_of(config.base_model)
    header = {
        "geometry": geometry.__dict__,
        "base_model": model_identity(config.base_model),
        "latent_channels": int(vae.config.latent_channels),
        "text_shape": [max_text_length, int(text_encoder.config.d_model)],
    }
    writer = CacheWriter(Path(config.cache_dir), shard_index, header, shard_size)
    skipped: dict[str, str] = {}
    for record in tqdm(records, desc="latent cache", disable=not show_progress):
        if record.clip_id in writer.done:
            continue
        try:
            tensors = encode_clip(record, dataset_dir, geometry, vae, tokenizer, text_encoder, max_text_length)
        except KeyboardInterrupt:
            writer.flush()
            raise
        except Exception as err:  # one unreadable clip must not lose the others
            skipped[record.clip_id] = f"{type(err).__name__}: {err}"
            logger.warning("skipping clip %s: %s", record.clip_id, skipped[record.clip_id])
            continue
        writer.add(record, tensors)
    writer.flush()
    if skipped:
        (Path(config.cache_dir) / f"skipped-{shard_index:05d}.json").write_text(json.dumps(skipped, indent=1))
    return Path(config.cache_dir)


def main(argv: list[str] | None = None) -> int:
    from mvideo_core.training.dataset_builder import shard_from_env

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    p = argparse.ArgumentParser(prog="python -m mvideo_core.training.precompute", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, type=Path, help="the training config (geometry, base_model, cache_dir)")
    p.add_argument("--manifest", required=True, type=Path, help="dataset folder or manifest .jsonl")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument(
        "--shard-size", type=cli_args.number(1, integer=True), default=64, help="samples per safetensors file"
    )
    p.add_argument("--vae-tiling", action="store_true", help="lower VAE memory at full resolution")
    args = p.parse_args(argv)
    config = TrainConfig.from_file(args.config, args.set)
    rank, world = shard_from_env()
    device = args.device
    if device == "cuda" and world > 1:
        device = f"cuda:{rank % max(1, torch.cuda.device_count())}"
    precompute_cache(
        config, args.manifest, rank, world, device, getattr(torch, args.dtype), args.shard_size, True, args.vae_tiling
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
