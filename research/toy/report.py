"""Ship the trained toy weights (assets/toy) and write docs/toy-model.md with the measured figures and a figure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import torch

from research.toy import SHIPPED_DIR
from research.toy.config import ToyConfig
from research.toy.workdir import StageError, base_model_dir, is_done, mvideo_run_name, read_done

FIGURE_NAME = "toy-model-frames.png"
VAE_FIGURE_NAME = "toy-model-vae.png"


def ship(work: Path, dest: Path | None = None) -> Path:
    """Copy the base model folder (transformer and VAE in fp16, loaded back as fp32) and the alpha = 1 MVideo weights
    file into `dest` (default assets/toy in the current folder, the repository root): `load_toy_pipeline(dest)` then
    loads them like any CogVideoX + MVideo."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel

    from research.toy.models import write_base_folder

    dest = Path(dest) if dest else SHIPPED_DIR
    weights = work / mvideo_run_name(1.0) / "mvideo.safetensors"
    if not weights.is_file():
        raise StageError(f"{weights} does not exist: run the mvideo stage first")
    config = ToyConfig.load(work / "toy_config.json")
    base = base_model_dir(work)
    if dest.exists():
        shutil.rmtree(dest)
    vae = AutoencoderKLCogVideoX.from_pretrained(base, subfolder="vae")
    transformer = CogVideoXTransformer3DModel.from_pretrained(base, subfolder="transformer")
    write_base_folder(dest / "base_model", config, vae, transformer, dtype=torch.float16)
    shutil.copy2(weights, dest / "mvideo.safetensors")
    shutil.copy2(work / "toy_config.json", dest / "toy_config.json")
    return dest


def _strip(frames: np.ndarray, masks: np.ndarray, times: list[int]) -> np.ndarray:
    """One row: generated frames at `times`, each beside its conditioning mask (white on black)."""
    tiles = []
    for t in times:
        m = np.repeat(masks[t][..., None].astype(np.uint8) * 255, 3, axis=-1)
        tiles += [frames[t], m, np.full((frames.shape[1], 4, 3), 255, np.uint8)]
    return np.concatenate(tiles, axis=1)


def write_figure(work: Path, path: Path, rows: int = 4) -> Path:
    """Generated held-out clips (MVideo, alpha = 1) at t = 0, 1, 2, 3, 4 s beside their masks, as a PNG."""
    from mvideo_core.masks import load_masks
    from mvideo_core.video_io import read_video

    videos = sorted((work / "eval" / "miou_a1").glob("heldout_*.mp4"))[: rows // 2]
    videos += sorted((work / "eval" / "seen_a1").glob("mask_*.mp4"))[: rows - len(videos)]
    strips = []
    for video in videos:
        frames = read_video(video).frames
        masks = load_masks(video.with_suffix(".npz")).union()
        strips.append(_strip(frames, masks, [0, 8, 16, 24, 32]))
        strips.append(np.full((4, strips[-1].shape[1], 3), 255, np.uint8))
    if not strips:
        raise StageError(f"no generated clips in {work / 'eval'}: run the evaluate stage first")
    img = np.concatenate(strips[:-1], axis=0)
    img = cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img[..., ::-1])
    return path


def write_vae_figure(work: Path, path: Path, rows: int = 3) -> Path:
    """Held-out world clips beside their toy-VAE reconstructions at t = 0, 2, 4 s, as a PNG."""
    from diffusers import AutoencoderKLCogVideoX

    from research.toy.models import reconstruct
    from research.toy.world import make_clip

    vae = AutoencoderKLCogVideoX.from_pretrained(base_model_dir(work), subfolder="vae").eval()
    strips = []
    for i in range(rows):
        clip = make_clip("heldout", i)
        rec = reconstruct(vae, clip.frames)
        tiles = []
        for t in (0, 16, 32):
            tiles += [clip.frames[t], rec[t], np.full((clip.frames.shape[1], 4, 3), 255, np.uint8)]
        strips += [np.concatenate(tiles, axis=1), np.full((4, len(tiles) // 3 * (2 * 96 + 4), 3), 255, np.uint8)]
    img = cv2.resize(np.concatenate(strips[:-1], axis=0), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img[..., ::-1])
    return path


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


LC_INPUTS = {  # TrainConfig.consistency_inputs, in words
    "masked": "masked student pass (the one L_d trains)",
    "unmasked": "text-only student pass (consistency_inputs=unmasked)",
}


def miou_by_shape(clips: list[float], split: str = "heldout", offset: int = 0) -> dict[str, list[float]]:
    """Per-clip mIoU grouped by the scene's shape kinds ("cross", "ring", "cross+ring" for two subjects); clip i of an
    evaluation is scene `offset + i` of `split`, as `eval_mask_miou` draws them."""
    from research.toy.world import sample_scene

    groups: dict[str, list[float]] = {}
    for i, value in enumerate(clips):
        kinds = "+".join(sorted({s.shape for s in sample_scene(split, offset + i).subjects}))
        groups.setdefault(kinds, []).append(float(value))
    return dict(sorted(groups.items()))


def _shape_row(label: str, ev: dict, keys: tuple[str, ...]) -> str:
    """A results row: for each held-out shape kind, its clip count and the mean mIoU of each of `keys`."""
    if not all("clips" in ev.get(k, {}) for k in keys):
        return f"| {label} | - | - | - |"
    per = [miou_by_shape(ev[k]["clips"]) for k in keys]
    cells = [
        f"{kind} (n={len(values)}): " + " / ".join(_fmt(float(np.mean(p[kind]))) for p in per)
        for kind, values in per[0].items()
    ]
    return f"| {label} | {'; '.join(cells)} | - | - |"


def write_report(work: Path, config: ToyConfig, docs: Path) -> Path:
    """docs/toy-model.md: the world, the stages with their costs, the results table and the figure."""
    if not is_done(work / "eval"):
        raise StageError("report needs the evaluate stage")
    vae, data, base = read_done(work / "vae"), read_done(work / "data"), read_done(work / "base")
    a1, a0 = read_done(work / "mvideo_a1"), read_done(work / "mvideo_a0")
    ev = read_done(work / "eval")
    write_figure(work, docs / FIGURE_NAME)
    write_vae_figure(work, docs / VAE_FIGURE_NAME)
    results = {"config": config.to_dict(), "vae": vae, "data": data, "base": base, "a1": a1, "a0": a0, "eval": ev}
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "toy-model-results.json").write_text(json.dumps(results, indent=1, default=str))
    long = ev["long_a1"]
    gap = abs(long["miou_16s"] - long["miou_4s"])
    m1, m0 = ev["miou_a1"]["miou"], ev["miou_a0"]["miou"]
    ceiling, ceiling_motion = ev["miou_ceiling"]["miou"], ev["miou_ceiling_motion"]["miou"]
    tb, t1, t0 = (ev[k]["accuracy"] for k in ("text_base", "text_a1", "text_a0"))
    n1, n0 = (ev.get(k, {}).get("accuracy") for k in ("text_a1_nomask", "text_a0_nomask"))

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    cost = {k: v.get("seconds_this_run") for k, v in (("vae", vae), ("base", base), ("a1", a1), ("a0", a0))}
    alpha1 = f"alpha={a1.get('alpha', 1.0):g}"  # the L_c weight the `mvideo` stage trained with (consistency_weight)
    lines = [
        "# Toy MVideo: a scale model trained on CPU",
        "",
        "No MVideo weights exist and real CogVideoX cannot run on our CPUs, so this is the evidence that our",
        "implementation of the method works: a tiny CogVideoX-architecture model, trained here on 2 CPU cores on a",
        "procedural world, steered by mask sequences. Everything below was produced by one command",
        "(`python -m research.toy run --work runs/toy --docs docs`, then `... ship`; each stage checkpoints and",
        "resumes) and measured through the",
        "project's public code: `load_mvideo_pipeline` / `MVideoPipeline`, `generate_long_video`, the trainer",
        "`MVideoTrainer` (LoRA + mask input + consistency loss), the latent cache `precompute_cache`, and",
        "`python -m mvideo_core.evaluate` (paper eq. 3, classic tracker).",
        "",
        "The shipped weights (`assets/toy/`, a CogVideoX-layout base folder in fp16 plus `mvideo.safetensors`) load with",
        "`research.toy.load_toy_pipeline()`; `tests/test_toy_model.py` checks them on a fixed held-out mask sequence.",
        "",
        "## The world (`research/toy/world.py`)",
        "",
        "64x96 pixels, 33 frames at 8 fps (4 s, as the real model). Shapes (square, circle, triangle, star, diamond;",
        "held out: cross, ring) in 8 colours with plain/striped/dotted textures move right, left, uphill, downhill, zoom",
        "in or out, or wander along a random smooth curve (a new curve in every scene; held out: a circle path and a",
        "zigzag) over four simple backgrounds (soft bands, stripes, a plain gradient, a few dim stars), with camera",
        "pans and two-subject scenes; masks are the exact visible pixels. Base captions name colour, shape, motion",
        'and background ("a red star moves uphill over a sandy floor"); mask-to-video captions name no motion',
        '("a red star over a sandy floor": the path must come from the masks; `--set mask_caption_motion=true`',
        "restores the motion words). Clips are stored as yuv444p H.264 (4:2:0 chroma would blur 64x96 edges).",
        "",
        "| data set | colours | shapes | motions | clips |",
        "|---|---|---|---|---|",
        f"| base (stage 2, text-to-video) | all 8 | 5 trained | 7 trained | {config.base_clips} x 33 frames |",
        f"| mask-to-video (stage 3) | red, green, blue | 5 trained | 7 trained | {config.mask_clips} x 65 frames "
        "(last 4 s = target, first 4 s = long-video conditions) |",
        "| held-out (mIoU) | all 8 | cross, ring | circle, zigzag | never trained on |",
        "| held-out motion (mIoU) | all 8 | 5 trained | circle, zigzag | never trained on |",
        "| text following | yellow, purple, orange, cyan, white | 5 trained | 7 trained | prompts only |",
        "",
        "## Stages and their cost (2 CPU cores)",
        "",
        "| stage | what | steps | seconds |",
        "|---|---|---|---|",
        f"| 1 vae | AutoencoderKLCogVideoX {tuple(config.vae_blocks)}, {config.latent_channels} latent channels, "
        f"{config.vae_snippet_frames}-frame {config.vae_crop[0]}x{config.vae_crop[1]} snippets, batch "
        f"{config.vae_batch} | {vae['steps']} | {_fmt(cost['vae'], 0)}"
        + (f" (on {vae['trained_on']})" if vae.get("trained_on") else "")
        + " |",
        f"| 2 data | world clips -> mp4 + masks + manifest -> `precompute_cache` | "
        f"{' + '.join(f'{n} {split}' for split, n in data['samples'].items())} clips | "
        f"{_fmt(data.get('seconds_this_run'), 0)} |",
        f"| 3 base | CogVideoX transformer, {config.num_layers} layers, {config.num_heads}x{config.head_dim} heads, "
        f"full training, L_d, 10 % empty prompts | {base['steps']} x batch {config.base_batch} | "
        f"{_fmt(cost['base'], 0)} |",
        f"| 4 mvideo {alpha1} | `MVideoTrainer`, LoRA rank {config.lora_rank} + mask input + condition tokens, "
        f"L_c on the {LC_INPUTS[config.consistency_inputs]} | "
        f"{a1['steps']} x batch {config.mvideo_batch} | {_fmt(cost['a1'], 0)} |",
        f"| 4 mvideo alpha=0 | same without L_c | {a0['steps']} x batch {config.mvideo_batch} | {_fmt(cost['a0'], 0)} |",
        "",
        "Seconds are those of the last (resumed) run of a stage; stages shared the CPU with other work.",
        "",
        "## Results",
        "",
        "| measure | value | target | verdict |",
        "|---|---|---|---|",
        f"| VAE PSNR on held-out clips (dB) | {_fmt(vae['psnr_heldout_db'], 2)} | - | - |",
        f"| VAE PSNR on the subject pixels only (dB) | {_fmt(vae.get('psnr_subject_db'), 2)} | - | - |",
        f"| VAE keeps the subject colour (held-out clips) | {_fmt(vae.get('subject_color_kept'), 2)} | - | - |",
        f"| mask mIoU (eq. 3), held-out shapes + motions, MVideo {alpha1} | {_fmt(m1)} | >= 0.80 | {verdict(m1 >= 0.8)} |",
        f"| same, MVideo alpha=0 | {_fmt(m0)} | - | - |",
        f"| same metric on the world's own video (ceiling of the tracker) | {_fmt(ceiling)} | - | - |",
        f"| same on the world's video encoded + decoded by the toy VAE (ceiling of the VAE) | "
        f"{_fmt(ev['miou_vae_ceiling']['miou'])} | - | - |",
        _shape_row(
            f"same by held-out shape: {alpha1} / alpha=0 / VAE ceiling / tracker ceiling",
            ev,
            ("miou_a1", "miou_a0", "miou_vae_ceiling", "miou_ceiling"),
        ),
        f"| mask mIoU, trained shapes + held-out motions, {alpha1} | {_fmt(ev['miou_motion_a1']['miou'])} | - | - |",
        f"| same, alpha=0 | {_fmt(ev['miou_motion_a0']['miou'])} | - | - |",
        f"| same metric on the world's own video (ceiling) | {_fmt(ceiling_motion)} | - | - |",
        f"| mask mIoU, new scenes of the trained kind (shapes, motions, RGB colours), {alpha1} / alpha=0 | "
        f"{_fmt(ev['miou_seen_a1']['miou'])} / {_fmt(ev['miou_seen_a0']['miou'])} | - | - |",
        f"| same metric on the world's own video / through the toy VAE (ceilings) | "
        f"{_fmt(ev['miou_seen_ceiling']['miou'])} / {_fmt(ev['miou_seen_vae_ceiling']['miou'])} | - | - |",
        f"| tracker-free IoU, new scenes of the trained kind, {alpha1} / alpha=0 | "
        f"{_fmt(ev['direct_seen_a1']['iou'])} / {_fmt(ev['direct_seen_a0']['iou'])} | - | - |",
        f"| tracker-free IoU (subject pixels vs mask), held-out, {alpha1} / alpha=0 | "
        f"{_fmt(ev['direct_a1']['iou'])} / {_fmt(ev['direct_a0']['iou'])} | - | - |",
        f"| same, trained shapes + held-out motions, {alpha1} / alpha=0 | "
        f"{_fmt(ev['direct_motion_a1']['iou'])} / {_fmt(ev['direct_motion_a0']['iou'])} | - | - |",
        f"| same on the world's video / through the toy VAE (ceilings) | "
        f"{_fmt(ev['direct_ceiling']['iou'])} / {_fmt(ev['direct_vae_ceiling']['iou'])} | - | - |",
        f"| text following on colours absent from the mask data, base | {_fmt(tb, 2)} | - | - |",
        f"| same, MVideo {alpha1} (with L_c), text only (the paper's Table 4 protocol: no mask) | {_fmt(n1, 2)} | "
        f"near base | {verdict(n1 is not None and n1 >= tb - 0.1)} |",
        f"| same, MVideo alpha=0 (without L_c), text only | {_fmt(n0, 2)} | below {alpha1} | "
        f"{verdict(n0 is not None and n1 is not None and n0 < n1)} |",
        f"| same with the mask sequence given, MVideo {alpha1} | {_fmt(t1, 2)} | near base | {verdict(t1 >= tb - 0.1)} |",
        f"| same with the mask sequence given, MVideo alpha=0 | {_fmt(t0, 2)} | below {alpha1} | {verdict(t0 < t1)} |",
        f"| long video mIoU, 4 s (first clip) | {_fmt(long['miou_4s'])} | - | - |",
        f"| long video mIoU, 16 s (4 clips) | {_fmt(long['miou_16s'])} | within 0.05 of 4 s | "
        f"{verdict(gap <= 0.05)} (gap {_fmt(gap)}) |",
        f"| long video: clips whose subject keeps the prompt colour | {_fmt(long['color_kept'], 2)} | - | - |",
        f"| long video: max mean-colour drift of a clip's last frame vs clip 0 | "
        f"{_fmt(long['max_mean_color_drift'], 2)} | - | - |",
        "",
        f"mIoU over {config.eval_clips} clips each, text following over {config.text_clips} prompts per model, long "
        f"video over {config.long_clips} mask sequences of 16 s; {config.inference_steps} DDIM steps, guidance "
        f"{config.guidance_scale}. Raw figures: `docs/toy-model-results.json`.",
        "",
        f"![generated held-out clips (t = 0, 1, 2, 3, 4 s) beside their conditioning masks]({FIGURE_NAME})",
        "",
        f"Each row: generated frame (MVideo, {alpha1}), then its conditioning mask. Top rows: held-out mask "
        "sequences (shape and motion never trained on); bottom rows: new scenes of the trained kind.",
        "",
        f"![held-out world clips (t = 0, 2, 4 s) beside their toy-VAE reconstructions]({VAE_FIGURE_NAME})",
        "",
        "The toy VAE: each world frame, then its reconstruction.",
        "",
        "NOTES_PLACEHOLDER",
        "",
    ]
    notes = work / "notes.md"  # hand-written discussion of the measured run, kept beside it
    text = "\n".join(lines).replace("NOTES_PLACEHOLDER", notes.read_text() if notes.is_file() else "")
    docs.mkdir(parents=True, exist_ok=True)
    path = docs / "toy-model.md"
    path.write_text(text)
    return path
