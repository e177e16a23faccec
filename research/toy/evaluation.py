"""Measure the toy MVideo the way the paper measures MVideo, through the project's public code paths.

- mask mIoU (eq. 3): generated videos + their conditioning masks written as files, scored by `python -m
  mvideo_core.evaluate --tracker classic` (held-out shapes and motions never seen in training);
- text following (table 4 in small): the fraction of generations whose subject has the prompt's colour, on colours
  absent from the mask-to-video subset, for the base model, MVideo with L_c (alpha = 1) and without (alpha = 0);
- long video (table 5 in small): `generate_long_video` for 16 s, mIoU of its first 4 s clip vs the whole 16 s, and
  the fraction of clips whose subject keeps the prompt's colour.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from research.toy.config import ToyConfig
from research.toy.workdir import StageError, base_model_dir, is_done, mark_done, mvideo_run_name, read_done
from research.toy.world import CLIP_FRAMES, FPS, caption_for, make_clip, render_scene, sample_scene, subject_color

logger = logging.getLogger(__name__)

LONG_SECONDS = 16
LONG_INDEX_OFFSET = 100  # long-video mask sequences: held-out scenes 100.. (disjoint from the 4 s ones)
SEEN_OFFSET = 10_000  # mask-split scenes from here on were never rendered for training (it used 0 .. mask_clips-1)


def load_pipeline(work: Path, alpha: float | None):
    """The toy pipeline through `load_mvideo_pipeline`: alpha None = the base model (no MVideo weights)."""
    import warnings

    from mvideo_core.weights import load_mvideo_pipeline

    base = base_model_dir(work)
    if alpha is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe = load_mvideo_pipeline(base, None, require_mvideo_weights=False)
    else:
        pipe = load_mvideo_pipeline(base, work / mvideo_run_name(alpha) / "mvideo.safetensors")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompt: str, masks: np.ndarray | None, config: ToyConfig, seed: int) -> np.ndarray:
    """One 33-frame clip, uint8 [T, H, W, 3]."""
    out = pipe(
        prompt=prompt,
        masks=masks,
        height=config.height,
        width=config.width,
        num_frames=CLIP_FRAMES,
        num_inference_steps=config.inference_steps,
        guidance_scale=config.guidance_scale,
        mask_guidance_scale=config.mask_guidance_scale if masks is not None else 1.0,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    ).frames[0]  # [T, H, W, 3] float in [0, 1]
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def run_evaluate_cli(pairs: list[tuple[Path, Path]], out_json: Path) -> dict:
    """`python -m mvideo_core.evaluate --pairs ... --tracker classic --out ...` in-process; returns its report."""
    from mvideo_core import evaluate

    out_json.parent.mkdir(parents=True, exist_ok=True)
    csv_path = out_json.with_suffix(".pairs.csv")
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "masks"])
        for video, masks in pairs:
            writer.writerow([str(video.resolve()), str(masks.resolve())])
    evaluate.main(["--pairs", str(csv_path), "--tracker", "classic", "--out", str(out_json)])
    return json.loads(out_json.read_text())


def write_pair(folder: Path, name: str, frames: np.ndarray, maskset) -> tuple[Path, Path]:
    """A video and its masks as the evaluate CLI reads them: folder/name.mp4 (yuv444p, crf 12) + folder/name.npz."""
    from mvideo_core.masks import save_masks
    from mvideo_core.video_io import write_video

    folder.mkdir(parents=True, exist_ok=True)
    video = write_video(folder / f"{name}.mp4", frames, FPS, crf=12, pix_fmt="yuv444p")
    masks = save_masks(maskset, folder / f"{name}.npz")
    return video, masks


def eval_mask_miou(
    work: Path,
    config: ToyConfig,
    alpha: float | None,
    out: Path,
    split: str = "heldout",
    through_vae: bool = False,
    offset: int = 0,
    motion_words: bool | None = None,
) -> dict:
    """Generate from each mask sequence of a split never trained on, score with the evaluate CLI.

    alpha None scores the world's own video (ground truth) through the same tracker: the ceiling of the metric;
    with `through_vae` the ground truth is first encoded and decoded by the toy VAE (the ceiling of any model that
    decodes through it).
    """
    if motion_words is None:  # prompts worded like the mask-to-video captions the model was trained on
        motion_words = config.mask_caption_motion
    pipe = None if alpha is None else load_pipeline(work, alpha)
    vae = None
    if through_vae:
        from diffusers import AutoencoderKLCogVideoX

        vae = AutoencoderKLCogVideoX.from_pretrained(base_model_dir(work), subfolder="vae").eval()
    pairs = []
    for i in range(offset, offset + config.eval_clips):
        clip = make_clip(split, i, CLIP_FRAMES)
        if vae is not None:
            from research.toy.models import reconstruct

            frames = reconstruct(vae, clip.frames)
        elif pipe is None:
            frames = clip.frames
        else:
            prompt = caption_for(clip.scene, motion_words)
            frames = generate(pipe, prompt, clip.masks.union(), config, seed=1000 + i)
        pairs.append(write_pair(out, f"{split}_{i:05d}", frames, clip.masks))
    report = run_evaluate_cli(pairs, out / "scores.json")
    return {"miou": report["miou"], "clips": [c["miou"] for c in report["clips"]], "failed": report["failed"]}


def eval_direct_iou(folder: Path) -> dict:
    """Tracker-free mask alignment of the (video, masks) pairs in `folder`: IoU per frame of the conditioning mask
    union with `subject_region` of the video, averaged over frames (where the subject is, not its exact outline)."""
    from mvideo_core.masks import load_masks
    from mvideo_core.metrics import mask_iou
    from mvideo_core.video_io import read_video
    from research.toy.world import subject_region

    values = []
    for video in sorted(folder.glob("*.mp4")):
        frames = read_video(video).frames
        masks = load_masks(video.with_suffix(".npz")).union()[: len(frames)]
        region = subject_region(frames[: len(masks)])
        values += [mask_iou(m, r) for m, r in zip(masks, region) if m.any()]
    return {"iou": float(np.mean(values)) if values else None, "frames": len(values)}


def eval_text_following(
    work: Path, config: ToyConfig, alpha: float | None, out: Path, with_masks: bool = True
) -> dict:
    """Fraction of generations whose subject has the prompt's colour (colours absent from the mask subset).
    with_masks=False prompts MVideo with text only, as the paper's Table 4 (VBench without any mask condition)."""
    pipe = load_pipeline(work, alpha)
    out.mkdir(parents=True, exist_ok=True)
    hits, seen = 0, []
    for i in range(config.text_clips):
        clip = make_clip("text", i, CLIP_FRAMES)
        masks = None if alpha is None or not with_masks else clip.masks.union()
        frames = generate(pipe, clip.caption, masks, config, seed=2000 + i)
        want = clip.scene.subjects[0].color
        got = subject_color(frames)
        hits += int(got == want)
        seen.append({"prompt": clip.caption, "want": want, "got": got})
        if i < 4:
            np.savez_compressed(out / f"text_{i:03d}.npz", frames=frames)
    (out / "colors.json").write_text(json.dumps(seen, indent=1))
    return {"accuracy": hits / max(1, config.text_clips), "n": config.text_clips, "samples": seen}


def eval_long_video(work: Path, config: ToyConfig, alpha: float, out: Path) -> dict:
    """16 s by `generate_long_video`: mIoU of the first 4 s clip and of the whole 16 s, colour kept per clip."""
    from mvideo_core.long_video import ClipResult, LongVideoResult, generate_long_video, total_frames
    from mvideo_core.masks import MaskSet, save_masks

    pipe = load_pipeline(work, alpha)
    pairs4, pairs16, color_ok, drifts = [], [], [], []
    n_frames = total_frames(LONG_SECONDS // 4)
    for i in range(config.long_clips):
        scene = sample_scene("heldout", LONG_INDEX_OFFSET + i)
        clip = render_scene(scene, n_frames)
        folder = out / f"long_{i:03d}"
        want = scene.subjects[0].color
        final = None
        for item in generate_long_video(
            pipe,
            caption_for(scene, config.mask_caption_motion),
            out_dir=folder,
            seconds=LONG_SECONDS,
            masks=clip.masks,
            seed=3000 + i,
            num_inference_steps=config.inference_steps,
            guidance_scale=config.guidance_scale,
            mask_guidance_scale=config.mask_guidance_scale,
            use_dynamic_cfg=False,
            height=config.height,
            width=config.width,
            progress=False,
        ):
            if isinstance(item, ClipResult):
                color_ok.append(subject_color(item.frames) == want)
            elif isinstance(item, LongVideoResult):
                final = item
                drifts.append(max(d["mean_color"] for d in item.drift))
        masks16 = folder / "final.npz"
        save_masks(clip.masks, masks16)
        first = MaskSet(clip.masks.masks[:, :CLIP_FRAMES], FPS, clip.masks.ids, clip.masks.names)
        masks4 = save_masks(first, folder / "clip_000.npz")
        pairs16.append((final.path, masks16))
        pairs4.append((folder / "clip_000.mp4", masks4))
    r4 = run_evaluate_cli(pairs4, out / "scores_4s.json")
    r16 = run_evaluate_cli(pairs16, out / "scores_16s.json")
    return {
        "miou_4s": r4["miou"],
        "miou_16s": r16["miou"],
        "color_kept": float(np.mean(color_ok)) if color_ok else None,
        "max_mean_color_drift": float(np.max(drifts)) if drifts else None,
        "clips": [c["miou"] for c in r16["clips"]],
    }


def stage_evaluate(work: Path, config: ToyConfig, progress: bool = True) -> dict:
    """All measurements; each part is saved as it finishes (a rerun skips finished parts)."""
    folder = work / "eval"
    if is_done(folder):
        return read_done(folder)
    for name in ("mvideo_a1", "mvideo_a0"):
        if not is_done(work / name):
            raise StageError(f"stage evaluate needs {name}: run the mvideo stages first")
    folder.mkdir(parents=True, exist_ok=True)
    parts_file = folder / "parts.json"
    parts = json.loads(parts_file.read_text()) if parts_file.is_file() else {}
    jobs = {
        "miou_ceiling": lambda: eval_mask_miou(work, config, None, folder / "miou_ceiling"),
        "miou_ceiling_motion": lambda: eval_mask_miou(work, config, None, folder / "motion_ceiling", "motion"),
        "miou_vae_ceiling": lambda: eval_mask_miou(work, config, None, folder / "vae_ceiling", through_vae=True),
        "miou_a1": lambda: eval_mask_miou(work, config, 1.0, folder / "miou_a1"),
        "miou_a0": lambda: eval_mask_miou(work, config, 0.0, folder / "miou_a0"),
        "miou_motion_a1": lambda: eval_mask_miou(work, config, 1.0, folder / "motion_a1", "motion"),
        "miou_motion_a0": lambda: eval_mask_miou(work, config, 0.0, folder / "motion_a0", "motion"),
        "direct_ceiling": lambda: eval_direct_iou(folder / "miou_ceiling"),
        "direct_vae_ceiling": lambda: eval_direct_iou(folder / "vae_ceiling"),
        "direct_a1": lambda: eval_direct_iou(folder / "miou_a1"),
        "direct_a0": lambda: eval_direct_iou(folder / "miou_a0"),
        "direct_motion_a1": lambda: eval_direct_iou(folder / "motion_a1"),
        "direct_motion_a0": lambda: eval_direct_iou(folder / "motion_a0"),
        # in-distribution: new scenes of the mask-to-video data's own kind (trained shapes, motions, colours)
        "miou_seen_a1": lambda: eval_mask_miou(work, config, 1.0, folder / "seen_a1", "mask", offset=SEEN_OFFSET),
        "miou_seen_a0": lambda: eval_mask_miou(work, config, 0.0, folder / "seen_a0", "mask", offset=SEEN_OFFSET),
        "miou_seen_ceiling": lambda: eval_mask_miou(
            work, config, None, folder / "seen_ceiling", "mask", offset=SEEN_OFFSET
        ),
        "miou_seen_vae_ceiling": lambda: eval_mask_miou(
            work, config, None, folder / "seen_vae_ceiling", "mask", through_vae=True, offset=SEEN_OFFSET
        ),
        "direct_seen_a1": lambda: eval_direct_iou(folder / "seen_a1"),
        "direct_seen_a0": lambda: eval_direct_iou(folder / "seen_a0"),
        "text_base": lambda: eval_text_following(work, config, None, folder / "text_base"),
        "text_a1": lambda: eval_text_following(work, config, 1.0, folder / "text_a1"),
        "text_a0": lambda: eval_text_following(work, config, 0.0, folder / "text_a0"),
        "text_a1_nomask": lambda: eval_text_following(work, config, 1.0, folder / "text_a1_nomask", False),
        "text_a0_nomask": lambda: eval_text_following(work, config, 0.0, folder / "text_a0_nomask", False),
        "long_a1": lambda: eval_long_video(work, config, 1.0, folder / "long_a1"),
    }
    for name, job in jobs.items():
        if name in parts:
            continue
        t0 = time.time()
        logger.info("evaluate: %s", name)
        parts[name] = {**job(), "seconds": time.time() - t0}
        parts_file.write_text(json.dumps(parts, indent=1))
    return mark_done(folder, parts)
