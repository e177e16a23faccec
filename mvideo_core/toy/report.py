"""Ship the trained toy weights (assets/toy) and write docs/toy-model.md with the measured figures and a figure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import torch

from mvideo_core.toy.config import ToyConfig
from mvideo_core.toy.stages import StageError, base_model_dir, is_done, mvideo_run_name, read_done

ASSETS_TOY = Path(__file__).resolve().parents[2] / "assets" / "toy"
FIGURE_NAME = "toy-model-frames.png"


def ship(work: Path, dest: Path | None = None) -> Path:
    """Copy the base model folder (transformer and VAE in fp16, loaded back as fp32) and the alpha = 1 MVideo weights
    file into `dest` (default assets/toy): `load_toy_pipeline(dest)` then loads them like any CogVideoX + MVideo."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel

    from mvideo_core.toy.models import write_base_folder

    dest = Path(dest) if dest else ASSETS_TOY
    weights = work / mvideo_run_name(1.0) / "mvideo.safetensors"
    if not weights.is_file():
        raise StageError(f"{weights} does not exist: run the mvideo stage first")
    config = ToyConfig.load(work / "toy_config.json")
    base = base_model_dir(work)
    if dest.exists():
        shutil.rmtree(dest)
    vae = AutoencoderKLCogVideoX.from_pretrained(base, subfolder="vae")
    transformer = CogVideoXTransformer3DModel.from_pretrained(base, subfolder="transformer")
    write_base_folder(dest / "base", config, vae, transformer, dtype=torch.float16)
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

    folder = work / "eval" / "miou_a1"
    strips = []
    for video in sorted(folder.glob("heldout_*.mp4"))[:rows]:
        frames = read_video(video).frames
        masks = load_masks(video.with_suffix(".npz")).union()
        strips.append(_strip(frames, masks, [0, 8, 16, 24, 32]))
        strips.append(np.full((4, strips[-1].shape[1], 3), 255, np.uint8))
    if not strips:
        raise StageError(f"no generated clips in {folder}: run the evaluate stage first")
    img = np.concatenate(strips[:-1], axis=0)
    img = cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img[..., ::-1])
    return path


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_report(work: Path, config: ToyConfig, docs: Path) -> Path:
    """docs/toy-model.md: the world, the stages with their costs, the results table and the figure."""
    if not is_done(work / "eval"):
        raise StageError("report needs the evaluate stage")
    vae, data, base = read_done(work / "vae"), read_done(work / "data"), read_done(work / "base")
    a1, a0 = read_done(work / "mvideo_a1"), read_done(work / "mvideo_a0")
    ev = read_done(work / "eval")
    write_figure(work, docs / FIGURE_NAME)
    results = {"config": config.to_dict(), "vae": vae, "data": data, "base": base, "a1": a1, "a0": a0, "eval": ev}
    (docs / "toy-model-results.json").write_text(json.dumps(results, indent=1, default=str))
    long = ev["long_a1"]
    gap = abs(long["miou_16s"] - long["miou_4s"])
    lines = [
        "# Toy MVideo: a scale model trained on CPU",
        "",
        "RESULTS_PLACEHOLDER",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| VAE PSNR, held-out clips (dB) | {_fmt(vae['psnr_heldout_db'], 2)} | - |",
        f"| mask mIoU, held-out shapes+motions, MVideo alpha=1 | {_fmt(ev['miou_a1']['miou'])} | >= 0.80 |",
        f"| mask mIoU, held-out shapes+motions, MVideo alpha=0 | {_fmt(ev['miou_a0']['miou'])} | - |",
        f"| text following (unseen-in-mask colours), base | {_fmt(ev['text_base']['accuracy'], 2)} | - |",
        f"| text following, MVideo alpha=1 | {_fmt(ev['text_a1']['accuracy'], 2)} | near base |",
        f"| text following, MVideo alpha=0 | {_fmt(ev['text_a0']['accuracy'], 2)} | below alpha=1 |",
        f"| long video mIoU 4 s | {_fmt(long['miou_4s'])} | - |",
        f"| long video mIoU 16 s | {_fmt(long['miou_16s'])} | within 0.05 of 4 s (gap {_fmt(gap)}) |",
        f"| long video: clips keeping the prompt colour | {_fmt(long['color_kept'], 2)} | - |",
        "",
        f"![generated held-out clips beside their masks]({FIGURE_NAME})",
        "",
    ]
    path = docs / "toy-model.md"
    path.write_text("\n".join(lines))
    return path
