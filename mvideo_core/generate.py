"""CLI: generate a long MVideo video from a mask sequence and a prompt, clip by clip.

    python -m mvideo_core.generate --masks masks.zip --prompt "an astronaut doing a backflip on the moon" \\
        --seconds 16 --out projects/moon --base-model THUDM/CogVideoX-5b --mvideo-weights path/or/hub-id

`--masks` takes a mask file (`.zip` PNGs, `.npz`, label `.mp4`, COCO `.json`), a folder holding one, or a folder of
per-frame PNGs; `--recipe edit.json --source NAME=MASKFILE ...` renders an edit recipe (editing.recipe) into the
masks instead, recorded in generation.json. Without either the video follows the text only. `--tiny-random` runs
the whole path on a tiny random model (noise-like output) for smoke tests, with no download.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

from editing.recipe import load as load_recipe
from editing.recipe import load_sources, render
from mvideo_core.budget import add_budget_arguments, budget_from_args
from mvideo_core.clip_spec import MASK_POLICIES, MASK_POLICY_HELP
from mvideo_core.engines import DEFAULT_ENGINE, ENGINES, EngineError, get_engine
from mvideo_core.long_video import FPS, ClipResult, generate_long_video
from mvideo_core.masks import MaskSet, load_masks
from mvideo_core.settings import GenerationSettings, SettingsError
from mvideo_core.video_io import read_image
from mvideo_core.weights import WeightsError

MASK_FILE_SUFFIXES = (".zip", ".npz", ".mp4", ".json")
# The flag that sets each GenerationSettings field, so a bad value is reported under the name the user typed.
SETTING_FLAGS = {
    "prompt": "--prompt",
    "negative_prompt": "--negative-prompt",
    "seconds": "--seconds",
    "seed": "--seed",
    "num_inference_steps": "--steps",
    "guidance_scale": "--guidance",
    "mask_guidance_scale": "--mask-guidance",
    "use_dynamic_cfg": "--no-dynamic-cfg",
    "height": "--height",
    "width": "--width",
    "start_image": "--start-image",
    "color_match": "--color-match",
    "mask_policy": "--mask-policy",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mvideo_core.generate", description=__doc__.split("\n\n")[0])
    p.add_argument("--prompt", required=True, help="what the video shows")
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--masks", type=Path, default=None, help="mask file or folder (omit for text only)")
    p.add_argument("--mask-fps", type=float, default=None, help="frame rate of masks that carry none (default 8)")
    p.add_argument("--recipe", type=Path, default=None, help="an edit recipe (.json) rendered into the masks")
    p.add_argument(
        "--source", action="append", default=[], metavar="NAME=MASKFILE", help="a mask file the recipe names"
    )
    p.add_argument(
        "--mask-policy",
        choices=MASK_POLICIES,
        default="hold",
        help="masks shorter than the video: " + "; ".join(f"{k}: {v}" for k, v in MASK_POLICY_HELP.items()),
    )
    p.add_argument("--seconds", type=float, default=16, help="length, a multiple of the clip length (4 s for MVideo)")
    p.add_argument("--out", type=Path, required=True, help="project folder for the clips, final.mp4, generation.json")
    p.add_argument(
        "--engine",
        choices=sorted(ENGINES),
        default=DEFAULT_ENGINE,
        help="; ".join(f"{name}: {engine.label}" for name, engine in ENGINES.items()),
    )
    p.add_argument(
        "--base-model",
        "--base",
        dest="base_model",
        default=None,
        help="hub id or folder (default: the engine's, "
        + ", ".join(e.default_base_model for e in ENGINES.values())
        + ")",
    )
    p.add_argument("--mvideo-weights", default=None, help="mvideo.safetensors file, folder or hub id")
    p.add_argument("--no-mvideo-weights", action="store_true", help="run base CogVideoX (masks have no effect)")
    p.add_argument("--steps", type=int, default=50, help="denoising steps per clip")
    p.add_argument("--seed", type=int, default=0, help="seed of clip 0 (clip k uses seed + k)")
    p.add_argument("--guidance", type=float, default=6.0, help="classifier-free guidance scale (text only)")
    p.add_argument("--no-dynamic-cfg", action="store_true", help="constant guidance instead of CogVideoX's schedule")
    p.add_argument(
        "--mask-guidance",
        type=float,
        default=1.0,
        help="push towards the masks: 1 = off, 2 = moderate (~1.5x the work a step, batched with guidance; needs --masks)",
    )
    p.add_argument("--height", type=int, default=None, help="default: the base model's (480)")
    p.add_argument("--width", type=int, default=None, help="default: the base model's (720)")
    p.add_argument("--start-image", type=Path, default=None, help="an image the first clip starts from")
    p.add_argument("--color-match", action="store_true", help="match every clip's colours to clip 0 (less drift)")
    p.add_argument("--audio-from", type=Path, default=None, help="copy this video's audio into final.mp4")
    p.add_argument("--no-resume", action="store_true", help="start over instead of resuming in --out")
    p.add_argument("--offload", choices=["none", "model", "sequential"], default="none", help="CPU offload (CUDA)")
    p.add_argument("--vae-tiling", action="store_true", help="decode in tiles (less GPU memory)")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when present)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None, help="default bf16 on CUDA")
    p.add_argument(
        "--tiny-random",
        nargs="?",
        const="",
        default=None,
        metavar="VARIANT",
        help="use a tiny random model (smoke tests; noise-like output, no download): "
        + "; ".join(f"{name}: {', '.join(e.tiny_variants)}" for name, e in ENGINES.items()),
    )
    add_budget_arguments(p)
    return p


def _natural_key(name: str) -> list:
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name)]


def load_masks_arg(path: Path, fps: float | None = None) -> MaskSet:
    """A mask file, a folder holding one, or a folder of per-frame PNGs (white = subject) -> MaskSet."""
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.suffix.lower() in MASK_FILE_SUFFIXES)
        if files:
            return load_masks(files[0], fps=fps)
        pngs = sorted((f for f in path.iterdir() if f.suffix.lower() == ".png"), key=lambda f: _natural_key(f.name))
        if not pngs:
            raise ValueError(f"{path} holds no mask file ({', '.join(MASK_FILE_SUFFIXES)}) and no PNG frames")
        import cv2

        frames = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in pngs]
        bad = [f.name for f, m in zip(pngs, frames) if m is None]
        if bad:
            raise ValueError(f"unreadable PNG masks in {path}: {bad[:5]}")
        if len({m.shape for m in frames}) != 1:
            raise ValueError(f"the PNG masks in {path} differ in size; export them again at one size")
        return MaskSet(np.stack(frames)[None] > 127, fps=fps or FPS, names=[path.name])
    return load_masks(path, fps=fps)


def render_recipe_arg(path: Path, pairs: list[str], fps: float | None = None) -> tuple[MaskSet, dict]:
    """The masks an edit recipe renders to from its `NAME=MASKFILE` sources, and how they were made (recorded)."""
    recipe = load_recipe(path)
    masks = render(recipe, load_sources(pairs, fps))
    for warning in masks.meta.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    sources = dict(pair.partition("=")[::2] for pair in pairs)
    return masks, {"recipe_file": str(path), "recipe": recipe, "sources": sources}


def settings_from_args(args: argparse.Namespace, start_image: np.ndarray | None = None) -> GenerationSettings:
    """The one `GenerationSettings` of this run (raises SettingsError naming the field)."""
    return GenerationSettings(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        seconds=args.seconds,
        seed=args.seed,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        mask_guidance_scale=args.mask_guidance,
        use_dynamic_cfg=not args.no_dynamic_cfg,
        height=args.height,
        width=args.width,
        start_image=start_image,
        color_match=args.color_match,
        mask_policy=args.mask_policy,
    )


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings_from_args(args)  # every number checked before anything loads (the start image comes later)
    except SettingsError as err:
        return _error(f"{SETTING_FLAGS.get(err.field, err.field)} {err.problem}")
    if args.recipe is not None and args.masks is not None:
        return _error("give the masks either as --masks or as --recipe (with its --source files), not both")
    if args.source and args.recipe is None:
        return _error("--source names a mask file of an edit recipe: give --recipe too")
    if args.mask_guidance != 1 and args.masks is None and args.recipe is None:
        return _error("--mask-guidance pushes towards the masks: give --masks too, or leave it at 1")
    engine_class = get_engine(args.engine)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = args.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    try:
        masks = load_masks_arg(args.masks, args.mask_fps) if args.masks is not None else None
        masks_from = None
        if args.recipe is not None:
            masks, masks_from = render_recipe_arg(args.recipe, args.source, args.mask_fps)
        start_image = None
        if args.start_image is not None:
            start_image = read_image(args.start_image, budget_from_args(args))
        settings = settings_from_args(args, start_image)
        if args.tiny_random is not None:
            engine = engine_class.load_tiny_random(args.tiny_random or None)
        else:
            engine = engine_class.from_pretrained(
                args.base_model,
                args.mvideo_weights,
                require_weights=not args.no_mvideo_weights,
                torch_dtype=getattr(torch, dtype_name),
            )
        if args.offload != "none":
            engine.configure_memory(offload=args.offload, vae_tiling=args.vae_tiling)
        else:
            engine.configure_memory(vae_tiling=args.vae_tiling)
            engine.to(device)
        for result in generate_long_video(
            engine,
            settings,
            out_dir=args.out,
            masks=masks,
            mask_fps=args.mask_fps or FPS,
            audio_from=args.audio_from,
            resume=not args.no_resume,
            budget=budget_from_args(args),
            masks_from=masks_from,
        ):
            if isinstance(result, ClipResult):
                state = "resumed" if result.resumed else f"{result.seconds:.1f} s"
                print(f"clip {result.index + 1}/{result.num_clips}: {result.path} ({state})", flush=True)
            else:
                print(
                    json.dumps(
                        {"final": str(result.path), "frames": result.num_frames, "record": str(result.generation_json)}
                    )
                )
    except SettingsError as err:
        return _error(f"{SETTING_FLAGS.get(err.field, err.field)} {err.problem}")
    except (WeightsError, EngineError, ValueError, RuntimeError, OSError) as err:
        return _error(str(err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
