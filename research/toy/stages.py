"""The toy MVideo's stages, each resumable from its last checkpoint (a stage stopped half-way goes on from there).

    1. vae     tiny AutoencoderKLCogVideoX on short snippets of the world (reports PSNR and the mask mIoU ceiling)
    2. data    world clips -> dataset folders (mp4 + exact masks + manifest) -> the project's latent cache
    3. base    tiny CogVideoX text-to-video transformer, fully trained on the base data (all 8 colours)
    4. mvideo  the project's trainer (LoRA + mask input + L_c) on the 3-colour mask subset, alpha = 1 and alpha = 0
    5. evaluate / report  (research.toy.evaluation)

All files live in one work folder; `run_stage(name, work)` is idempotent: a finished stage returns at once.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mvideo_core.training.config import TrainConfig
from research.toy.config import ToyConfig
from research.toy.evaluation import run_evaluate_cli, write_pair
from research.toy.models import psnr, reconstruct
from research.toy.report import miou_by_shape
from research.toy.workdir import (
    CONFIG_FILE,
    StageError,
    base_model_dir,
    is_done,
    mark_done,
    mvideo_run_name,
    read_done,
)
from research.toy.world import FPS, make_clip, subject_color

logger = logging.getLogger(__name__)

# -- work folder -------------------------------------------------------------------------------------------------------


def prepare_work(
    work: str | Path, config: ToyConfig | None = None, overrides: dict | None = None
) -> tuple[Path, ToyConfig]:
    """The work folder and its config: a new folder saves `config` (default ToyConfig()); an existing one keeps the
    config it was started with, except for explicit `overrides` (e.g. more steps for a stage not finished yet)."""
    work = Path(work)
    path = work / CONFIG_FILE
    if path.is_file():
        saved = ToyConfig.load(path)
        if config is not None and config.to_dict() != saved.to_dict():
            changed = sorted(k for k, v in config.to_dict().items() if saved.to_dict().get(k) != v)
            raise StageError(
                f"{work} was started with another toy config (differs in {changed}); use a new --work folder "
                "or change values explicitly with --set"
            )
        config = saved
    config = config or ToyConfig()
    if overrides:
        config = ToyConfig.from_dict({**config.to_dict(), **overrides})
    work.mkdir(parents=True, exist_ok=True)
    config.save(path)
    return work, config


def _save_checkpoint(folder: Path, step: int, state: dict, keep: int = 2) -> Path:
    """torch.save of tensors and plain values only (loaded back with weights_only=True); keeps the last `keep`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"checkpoint-{step:06d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save({"step": step, **state}, tmp)
    tmp.replace(path)
    for old in sorted(folder.glob("checkpoint-*.pt"))[:-keep]:
        old.unlink()
    return path


def _latest_checkpoint(folder: Path) -> dict | None:
    files = sorted(folder.glob("checkpoint-*.pt"))
    if not files:
        return None
    return torch.load(files[-1], map_location="cpu", weights_only=True)


def _lr_at(step: int, total: int, lr: float, warmup: int = 20) -> float:
    """Linear warm-up then cosine decay to 10 % (a pure function of the step: resume-safe)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


# -- stage 1: VAE ------------------------------------------------------------------------------------------------------


def _vae_batch(config: ToyConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(videos [B, 3, T, h, w] in [-1, 1], loss weights [B, 1, T, h, w]): snippets of base-split clips cropped around
    the subject (a random crop would mostly hold background); subject pixels weigh `vae_subject_weight` (their
    colour is what the captions name). One sample in four is a mask video (the VAE encodes the mask condition)."""
    from mvideo_core.training.precompute import frames_to_tensor, masks_to_tensor
    from research.toy.models import spatial_factor

    rng = np.random.default_rng(config.seed * 7919 + step)
    t, (ch, cw), f = config.vae_snippet_frames, config.vae_crop, spatial_factor(config)
    videos, weights = [], []
    for _ in range(config.vae_batch):
        index, s = int(rng.integers(0, 10_000)), int(rng.integers(0, config.num_frames - t + 1))
        clip = make_clip("base", index, num_frames=config.num_frames, window=(s, s + t))  # only the snippet's frames
        union = clip.masks.union()  # [T, H, W]
        ys, xs = np.nonzero(union[t // 2])
        cy, cx = (ys.mean(), xs.mean()) if len(ys) else (config.height / 2, config.width / 2)
        cy, cx = cy + rng.uniform(-ch / 3, ch / 3), cx + rng.uniform(-cw / 3, cw / 3)
        y = int(np.clip(round((cy - ch / 2) / f), 0, (config.height - ch) // f)) * f
        x = int(np.clip(round((cx - cw / 2) / f), 0, (config.width - cw) // f)) * f
        crop = union[:, y : y + ch, x : x + cw]
        if rng.random() < 0.25:
            videos.append(masks_to_tensor(crop))
            weights.append(torch.ones(1, 1, *crop.shape))
        else:
            videos.append(frames_to_tensor(clip.frames[:, y : y + ch, x : x + cw]))
            w = 1.0 + (config.vae_subject_weight - 1.0) * torch.from_numpy(crop).float()
            weights.append(w[None, None])
    return torch.cat(videos), torch.cat(weights)


def vae_loss(rec: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, temporal_weight: float = 0.0) -> torch.Tensor:
    """Weighted MSE + L1/2 of the reconstruction [B, C, T, h, w]; with `temporal_weight`, also the weighted MSE of the
    error's change from frame to frame (d = e[t+1] - e[t]): an error that stays put (a colour a bit off) costs nothing
    there, one that moves with the subject (its average over a latent frame's 4 frames: a smear) costs double."""
    err = rec - x
    loss = (weight * (err**2 + 0.5 * err.abs())).mean() / weight.mean()
    if temporal_weight and err.shape[2] > 1:
        change = err[:, :, 1:] - err[:, :, :-1]
        w = torch.maximum(weight[:, :, 1:], weight[:, :, :-1])
        loss = loss + temporal_weight * (w * change**2).mean() / w.mean()
    return loss


class _VaeBatches(torch.utils.data.Dataset):
    """Step -> `_vae_batch(config, step)`, so that loader workers can draw the next batches while the GPU trains."""

    def __init__(self, config: ToyConfig, start: int):
        self.config, self.start = config, start

    def __len__(self) -> int:
        return self.config.vae_steps - self.start

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _vae_batch(self.config, self.start + index)


@torch.no_grad()
def latent_scaling_factor(vae, config: ToyConfig, clips: int = 8) -> float:
    """1 / std of the VAE's latents over world clips: makes the diffusion latents unit-variance (as SD/CogVideoX)."""
    from mvideo_core.training.precompute import frames_to_tensor

    values = []
    for i in range(clips):
        clip = make_clip("base", 50_000 + i, config.num_frames)
        values.append(vae.encode(frames_to_tensor(clip.frames)).latent_dist.mode().flatten())
    return float(1.0 / torch.cat(values).std())


def stage_vae(work: Path, config: ToyConfig, progress: bool = True, device: str | None = None) -> dict:
    """Train the tiny VAE (MSE + L1 + temporal + tiny KL) on snippets; save to work/vae/model; report held-out PSNR
    and the held-out mask mIoU ceiling through this VAE (by shape kind).

    `device` (default CPU) trains elsewhere, e.g. "cuda" with two loader workers drawing batches; the held-out
    figures are always computed on CPU, and checkpoints hold CPU tensors (a run can resume on either)."""
    folder = work / "vae"
    if is_done(folder):
        return read_done(folder)
    from accelerate.utils import send_to_device

    from research.toy.models import toy_vae

    device = torch.device(device or "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StageError("--device cuda: this machine's torch sees no CUDA GPU; leave --device out to train on CPU")
    vae = toy_vae(config).to(device)
    opt = torch.optim.Adam(vae.parameters(), lr=config.vae_lr)
    start = 0
    state = _latest_checkpoint(folder)
    if state is not None:
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])  # moves the moments to the parameters' device
        start = int(state["step"])
        logger.info("vae: resumed at step %d", start)
    vae.train()
    workers = 2 if device.type != "cpu" else 0
    batches = torch.utils.data.DataLoader(
        _VaeBatches(config, start), batch_size=None, num_workers=workers, prefetch_factor=8 if workers else None
    )
    history = []
    bar = tqdm(total=config.vae_steps, initial=start, desc="vae", disable=not progress)
    t0 = time.time()
    for step, (x, weight) in zip(range(start, config.vae_steps), batches, strict=True):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, config.vae_steps, config.vae_lr)
        torch.manual_seed(config.seed * 7919 + step)
        x, weight = x.to(device), weight.to(device)  # [B, 3, T, h, w], [B, 1, T, h, w]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.vae_precision == "bf16"):
            posterior = vae.encode(x).latent_dist
            rec = vae.decode(posterior.sample()).sample
        loss = vae_loss(rec.float(), x, weight, config.vae_temporal_weight)
        loss = loss + config.vae_kl_weight * posterior.kl().float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        history.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{history[-1]:.4f}")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.vae_steps:
            checkpoint = {"model": vae.state_dict(), "optimizer": opt.state_dict()}
            _save_checkpoint(folder, step + 1, send_to_device(checkpoint, "cpu"))
            _append_log(folder, {"step": step + 1, "loss": float(np.mean(history[-20:]))})
    bar.close()
    vae.to("cpu").eval()
    scale = latent_scaling_factor(vae, config, clips=max(1, min(8, config.eval_clips)))
    vae.register_to_config(scaling_factor=scale)
    vae.save_pretrained(folder / "model", safe_serialization=True)

    scores, subject_scores, colors_kept, pairs = [], [], [], []
    for i in range(config.eval_clips):
        clip = make_clip("heldout", i, config.num_frames)
        rec, union = reconstruct(vae, clip.frames), clip.masks.union()
        scores.append(psnr(rec, clip.frames))
        subject_scores.append(psnr(rec[union], clip.frames[union]))
        colors_kept.append(subject_color(rec, union) == clip.scene.subjects[0].color)
        pairs.append(write_pair(folder / "ceiling", f"heldout_{i:05d}", rec, clip.masks))
    # the mask mIoU ceiling of any model decoding through this VAE (eq. 3 on the held-out reconstructions): what the
    # later stages can reach at best, known before hours are spent on them
    ceiling = run_evaluate_cli(pairs, folder / "ceiling" / "scores.json")
    ceiling_clips = [c["miou"] for c in ceiling["clips"]]
    figures = {
        "psnr_heldout_db": float(np.mean(scores)),
        "psnr_subject_db": float(np.mean(subject_scores)),
        "subject_color_kept": float(np.mean(colors_kept)),
        "miou_vae_ceiling": ceiling["miou"],
        **{f"miou_vae_ceiling_{kind}": float(np.mean(v)) for kind, v in miou_by_shape(ceiling_clips).items()},
        "miou_vae_ceiling_clips": ceiling_clips,
        "psnr_clips": scores,
        "scaling_factor": scale,
        "steps": config.vae_steps,
        "seconds_this_run": time.time() - t0,
    }
    if device.type == "cuda":
        figures["trained_on"] = f"{torch.cuda.get_device_name(device)} (--device {device})"
    return mark_done(folder, figures)


# -- stage 2: data and latent cache -----------------------------------------------------------------------------------


def train_config(work: Path, config: ToyConfig, name: str, **values) -> TrainConfig:
    """The project's `TrainConfig` for a toy cache/run: toy geometry, CPU fp32, no tracker."""
    from mvideo_core.training.config import TrainConfig

    values.setdefault("output_dir", str(work / name))
    return TrainConfig(
        cache_dir=str(work / "cache" / name),
        base_model=str(base_model_dir(work)),
        height=config.height,
        width=config.width,
        fps=FPS,
        num_frames=config.num_frames,
        condition_height=config.condition_height,
        condition_width=config.condition_width,
        condition_frames=config.num_frames,
        mixed_precision="no",
        gradient_checkpointing=False,
        allow_tf32=False,
        report_to="none",
        **values,
    )


def write_dataset(
    folder: Path,
    split: str,
    count: int,
    config: ToyConfig,
    long_fraction: float = 0.0,
    motion_words: bool = True,
    progress: bool = True,
) -> Path:
    """World clips as a dataset folder in the builder's layout: clips/*.mp4, masks/*.npz, manifest.jsonl.

    A `long_fraction` of the clips are 65 frames long: the latent cache takes their last 33 frames as the target and
    the 33 before as the long-video conditions (a continuation clip), the rest are first clips. Resumes: clips whose
    files exist are not redrawn.
    """
    from mvideo_core.masks import save_masks
    from mvideo_core.training.manifest import ClipRecord
    from mvideo_core.video_io import write_video

    (folder / "clips").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    records = []
    for i in tqdm(range(count), desc=f"world {split}", leave=False, disable=not progress):
        long = (i % 100) < long_fraction * 100
        frames = 2 * config.num_frames - 1 if long else config.num_frames
        name = f"{split}-{i:05d}"
        video, masks = folder / "clips" / f"{name}.mp4", folder / "masks" / f"{name}.npz"
        clip = None
        if not (video.is_file() and masks.is_file()):
            clip = make_clip(split, i, frames)
            save_masks(clip.masks, masks)
            write_video(video, clip.frames, FPS, crf=12, pix_fmt="yuv444p")
        caption = _caption_of(split, i, motion_words)
        records.append(
            ClipRecord(
                clip_id=name,
                source=str(video.resolve()),
                start=0.0,
                end=frames / FPS,
                fps=FPS,
                num_frames=frames,
                height=config.height,
                width=config.width,
                fit="crop",
                caption=caption,
                masks=f"masks/{name}.npz",
                meta={"world_split": split, "world_index": i},
            )
        )
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(r.to_json() + "\n" for r in records), encoding="utf-8")
    return manifest


def _caption_of(split: str, index: int, motion_words: bool = True) -> str:
    from research.toy.world import caption_for, sample_scene

    return caption_for(sample_scene(split, index), motion_words)


def stage_data(work: Path, config: ToyConfig, progress: bool = True) -> dict:
    """Render the base (8 colours) and mask (3 colours) data sets and encode them with the project's precompute."""
    folder = work / "data"
    if is_done(folder):
        return read_done(folder)
    vae_dir = work / "vae" / "model"
    if not is_done(work / "vae"):
        raise StageError("stage data needs the trained VAE: run stage vae first")
    from diffusers import AutoencoderKLCogVideoX

    from mvideo_core.training.precompute import precompute_cache
    from research.toy.models import toy_transformer, write_base_folder

    base_dir = base_model_dir(work)
    if not (base_dir / "model_index.json").is_file():
        vae = AutoencoderKLCogVideoX.from_pretrained(vae_dir)
        write_base_folder(base_dir, config, vae, toy_transformer(config))
    t0 = time.time()
    counts = {}
    for split, count, long_fraction, motion_words in (
        ("base", config.base_clips, 0.0, True),
        ("mask", config.mask_clips, config.mask_long_fraction, config.mask_caption_motion),
    ):
        manifest = write_dataset(folder / split, split, count, config, long_fraction, motion_words, progress)
        cache = precompute_cache(train_config(work, config, split), manifest, show_progress=progress)
        from mvideo_core.training.precompute import read_cache_index

        _, samples = read_cache_index(cache)
        counts[split] = len(samples)
    return mark_done(folder, {"samples": counts, "seconds_this_run": time.time() - t0})


# -- stage 3: base text-to-video ---------------------------------------------------------------------------------------


def _load_cache(cache_dir: Path) -> dict[str, torch.Tensor]:
    """All samples of a toy latent cache in memory: latents [N, F, C, H, W], prompt_embeds [N, L, D]."""
    from mvideo_core.training.dataset import LatentCacheDataset

    data = LatentCacheDataset(cache_dir)
    items = [data[i] for i in range(len(data))]
    return {name: torch.stack([it[name] for it in items]) for name in ("latents", "prompt_embeds")}


@torch.no_grad()
def empty_prompt_embeds(base_dir: Path) -> torch.Tensor:
    """T5 embedding [1, L, D] of the empty prompt (what the pipeline's unconditional branch sees)."""
    from mvideo_core.training.precompute import encode_prompts, load_encoders, max_text_length_of

    _, tokenizer, text_encoder = load_encoders(str(base_dir))
    return encode_prompts(tokenizer, text_encoder, [""], max_text_length_of(str(base_dir)))


def stage_base(work: Path, config: ToyConfig, progress: bool = True) -> dict:
    """Train the whole tiny transformer on the base cache with CogVideoX's v-prediction loss (L_d); text dropout."""
    folder = work / "base"
    if is_done(folder):
        return read_done(folder)
    if not is_done(work / "data"):
        raise StageError("stage base needs the latent cache: run stage data first")
    from diffusers import CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

    from mvideo_core.training.losses import diffusion_loss

    base_dir = base_model_dir(work)
    data = _load_cache(work / "cache" / "base")
    empty = empty_prompt_embeds(base_dir)  # [1, L, D]
    scheduler = CogVideoXDDIMScheduler.from_pretrained(base_dir, subfolder="scheduler")
    from research.toy.models import toy_transformer

    model = toy_transformer(config)
    opt = torch.optim.AdamW(model.parameters(), lr=config.base_lr, betas=(0.9, 0.99), weight_decay=1e-4)
    start = 0
    state = _latest_checkpoint(folder)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
        logger.info("base: resumed at step %d", start)
    model.train()
    n = data["latents"].shape[0]
    history: list[float] = []
    t0 = time.time()
    bar = tqdm(total=config.base_steps, initial=start, desc="base", disable=not progress)
    for step in range(start, config.base_steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, config.base_steps, config.base_lr, warmup=100)
        gen = torch.Generator().manual_seed(config.seed * 104_729 + step)
        idx = torch.randint(0, n, (config.base_batch,), generator=gen)
        latents = data["latents"][idx]  # [B, F, C, H, W]
        embeds = data["prompt_embeds"][idx].clone()  # [B, L, D]
        drop = torch.rand(config.base_batch, generator=gen) < config.text_dropout
        embeds[drop] = empty[0]
        t = torch.randint(0, scheduler.config.num_train_timesteps, (config.base_batch,), generator=gen)
        noise = torch.randn(latents.shape, generator=gen)
        noisy = scheduler.add_noise(latents, noise, t)
        pred = model(hidden_states=noisy, encoder_hidden_states=embeds, timestep=t, return_dict=False)[0]
        loss = diffusion_loss(pred, noisy, latents, t, scheduler)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(history[-50:]):.4f}")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.base_steps:
            _save_checkpoint(folder, step + 1, {"model": model.state_dict(), "optimizer": opt.state_dict()})
            _append_log(folder, {"step": step + 1, "loss": float(np.mean(history[-50:]))})
    bar.close()
    model.eval().save_pretrained(base_dir / "transformer", safe_serialization=True)
    assert isinstance(model, CogVideoXTransformer3DModel)
    figures = {
        "final_loss": float(np.mean(history[-100:])) if history else None,
        "steps": config.base_steps,
        "seconds_this_run": time.time() - t0,
    }
    return mark_done(folder, figures)


# -- stage 4: MVideo with the project's trainer ------------------------------------------------------------------------


def stage_mvideo(work: Path, config: ToyConfig, alpha: float = 1.0, progress: bool = True) -> dict:
    """`MVideoTrainer` (LoRA + mask input + L_c with weight alpha) on the 3-colour mask subset; resumes from 'latest'."""
    name = mvideo_run_name(alpha)
    folder = work / name
    if is_done(folder):
        return read_done(folder)
    if not is_done(work / "base"):
        raise StageError(f"stage {name} needs the trained base model: run stage base first")
    from mvideo_core.training.trainer import MVideoTrainer

    cfg = train_config(
        work,
        config,
        "mask",
        output_dir=str(folder),
        lora_rank=config.lora_rank,
        lora_alpha=config.lora_rank,
        learning_rate=config.mvideo_lr,
        lr_warmup_steps=20,
        max_train_steps=config.mvideo_steps,
        train_batch_size=config.mvideo_batch,
        consistency_weight=float(alpha),
        consistency_inputs=config.consistency_inputs,
        condition_dropout=config.condition_dropout,
        checkpointing_steps=config.checkpoint_every,
        checkpoints_total_limit=2,
        resume_from_checkpoint="latest",
        seed=config.seed + 42,
    )
    cfg.save(folder / "train_config.json")
    t0 = time.time()
    result = MVideoTrainer(cfg).train(progress=progress)
    history = result.history
    figures = {
        "weights": str(result.weights_path),
        "alpha": float(alpha),
        "steps": config.mvideo_steps,
        "final_loss_diffusion": float(np.mean([h["loss_diffusion"] for h in history[-50:]])) if history else None,
        "final_loss_consistency": float(np.mean([h["loss_consistency"] for h in history[-50:]])) if history else None,
        "seconds_this_run": time.time() - t0,
    }
    with (folder / "history.jsonl").open("a") as handle:
        for h in history:
            handle.write(json.dumps(h) + "\n")
    return mark_done(folder, figures)


def _append_log(folder: Path, values: dict) -> None:
    with (folder / "log.jsonl").open("a") as handle:
        handle.write(json.dumps(values) + "\n")


STAGES: dict[str, Callable[..., dict]] = {
    "vae": stage_vae,
    "data": stage_data,
    "base": stage_base,
    "mvideo": lambda work, config, progress=True: stage_mvideo(work, config, config.consistency_weight, progress),
    "mvideo-a0": lambda work, config, progress=True: stage_mvideo(work, config, 0.0, progress),
}
