"""Long videos clip by clip (paper 3.3), each clip written to disk and yielded as soon as it is finished.

Timeline. Clips are t1 = 4 s = 33 frames at 8 fps and overlap by one frame: clip k covers frames
[32k, 32k + 33) of the output timeline, so n clips make 32n + 1 frames (n * 4 s). Clip k > 0 is conditioned on clip
k-1: its last frame at full resolution (appearance; the same instant as clip k's first frame) and all of its 33
frames at low resolution (motion, the previous t2 = 4 s). In the final video the duplicated first frame of every clip
after the first is dropped. Clip k takes the masks of frames [32k, 32k + 33). Training must cut samples the same way
(`clip_frame_ranges`, `condition_window`).

Files in `out_dir`: `clip_000.mp4` ... (each written before it is yielded), `final.mp4` (with the source's audio when
asked), `generation.json` (prompt, seeds, steps, guidance, model and weight ids, versions, per-clip colour drift) and
`.state/clip_000.npz` (the exact frames, so a killed run resumes from its last finished clip with the same result).

Colour drift. Recursive generation tends to drift in colour. Each clip's last frame is compared with clip 0's last frame
(distance of mean RGB colour in [0, 1] and histogram distance in [0, 1]); `color_match=True` keeps drift in check by
matching each clip's per-channel Lab mean / std to clip 0's before it is written and used as the next condition.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from mvideo_core import __version__
from mvideo_core.masks import MaskSet, as_bool_masks
from mvideo_core.video_io import resample_fps, resize_frames, resize_masks, write_video

FPS = 8.0
CLIP_SECONDS = 4
CLIP_FRAMES = 33  # 4 s at 8 fps, plus the frame shared with the next clip
CLIP_STRIDE = CLIP_FRAMES - 1
GENERATION_FILE = "generation.json"
FINAL_FILE = "final.mp4"
STATE_DIR = ".state"


class GenerationCancelled(RuntimeError):
    """Raised inside the pipeline callback to stop a clip when the user cancels."""


@dataclass
class ClipResult:
    """One finished clip: its mp4 (already on disk), its frames uint8 [33, H, W, 3] and its colour drift vs clip 0."""

    index: int
    num_clips: int
    path: Path
    frames: np.ndarray
    seed: int
    drift: dict[str, float]
    seconds: float
    resumed: bool = False


@dataclass
class LongVideoResult:
    """The final video (all clips joined) and where its record is."""

    path: Path
    num_frames: int
    fps: float
    clips: list[Path]
    generation_json: Path
    drift: list[dict[str, float]] = field(default_factory=list)


# -- timeline -------------------------------------------------------------------------------------------------------


def num_clips_for(seconds: float) -> int:
    """Number of 4 s clips in `seconds` (a positive whole multiple of 4)."""
    if not isinstance(seconds, (int, float)) or seconds <= 0 or seconds % CLIP_SECONDS:
        raise ValueError(f"seconds must be a positive multiple of {CLIP_SECONDS} (clips are 4 s), got {seconds}")
    return int(seconds // CLIP_SECONDS)


def total_frames(num_clips: int) -> int:
    """Frames of the final video: 32 n + 1."""
    return CLIP_STRIDE * num_clips + 1


def clip_frame_ranges(num_clips: int) -> list[tuple[int, int]]:
    """[start, stop) of each clip on the output timeline: clip k = [32k, 32k + 33)."""
    return [(CLIP_STRIDE * k, CLIP_STRIDE * k + CLIP_FRAMES) for k in range(num_clips)]


def condition_window(clip_start: int) -> tuple[int, tuple[int, int]]:
    """For a clip starting at frame s > 0: (appearance frame index, [start, stop) of the motion frames) = (s, [s-32, s+1))."""
    if clip_start < CLIP_STRIDE:
        raise ValueError(f"a clip starting at frame {clip_start} has no previous {CLIP_SECONDS} s to condition on")
    return clip_start, (clip_start - CLIP_STRIDE, clip_start + 1)


def prepare_long_masks(
    masks: MaskSet | np.ndarray, num_clips: int, size: tuple[int, int], fps: float = FPS
) -> np.ndarray:
    """Masks (MaskSet or bool [T, H, W] at `fps`) -> bool [32n + 1, H, W] at 8 fps and `size`, union of objects.

    Shorter mask videos hold their last frame; longer ones are cut.
    """
    if isinstance(masks, MaskSet):
        masks, fps = masks.union(), masks.fps
    masks = as_bool_masks(masks, 3)
    if masks.shape[0] == 0:
        raise ValueError("masks have no frames")
    if abs(fps - FPS) > 1e-6:
        masks = resample_fps(masks, fps, FPS)
    masks = resize_masks(masks, size)
    need = total_frames(num_clips)
    if masks.shape[0] < need:
        masks = np.concatenate([masks, np.repeat(masks[-1:], need - masks.shape[0], axis=0)])
    return np.ascontiguousarray(masks[:need])


# -- colour ---------------------------------------------------------------------------------------------------------


def color_drift(frame: np.ndarray, reference: np.ndarray, bins: int = 32) -> dict[str, float]:
    """Colour distance of frame uint8 [H, W, 3] to reference: mean RGB distance and histogram distance, both in [0, 1]."""
    mean = np.linalg.norm(frame.reshape(-1, 3).mean(0) - reference.reshape(-1, 3).mean(0)) / (255.0 * np.sqrt(3))
    hist = 0.0
    for c in range(3):
        h1 = np.histogram(frame[..., c], bins=bins, range=(0, 256))[0] / frame[..., c].size
        h2 = np.histogram(reference[..., c], bins=bins, range=(0, 256))[0] / reference[..., c].size
        hist += 0.5 * np.abs(h1 - h2).sum() / 3
    return {"mean_color": float(mean), "histogram": float(hist)}


def lab_stats(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel Lab mean and std of frames uint8 [T, H, W, 3]."""
    lab = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2LAB) for f in frames]).reshape(-1, 3).astype(np.float64)
    return lab.mean(0), lab.std(0) + 1e-6


def match_colors(frames: np.ndarray, reference: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Frames uint8 [T, H, W, 3] with their Lab mean/std moved to `reference` (Reinhard colour transfer)."""
    mean, std = lab_stats(frames)
    ref_mean, ref_std = reference
    out = np.empty_like(frames)
    for t, f in enumerate(frames):
        lab = cv2.cvtColor(f, cv2.COLOR_RGB2LAB).astype(np.float64)
        lab = (lab - mean) / std * ref_std + ref_mean
        out[t] = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    return out


# -- record ---------------------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    import diffusers
    import peft
    import transformers

    return {
        "mvideo_core": __version__,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "python": platform.python_version(),
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)  # atomic: a kill never leaves a half-written record


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    """Pipeline frames float [T, H, W, 3] in [0, 1] -> uint8."""
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# -- generation -----------------------------------------------------------------------------------------------------


def generate_long_video(
    pipe: Any,
    prompt: str,
    *,
    out_dir: str | Path,
    seconds: float = 16,
    masks: MaskSet | np.ndarray | None = None,
    mask_fps: float = FPS,
    negative_prompt: str | None = None,
    seed: int = 0,
    num_inference_steps: int = 50,
    guidance_scale: float = 6.0,
    mask_guidance_scale: float = 1.0,
    use_dynamic_cfg: bool = True,
    height: int | None = None,
    width: int | None = None,
    condition_size: tuple[int, int] | None = None,
    start_image: np.ndarray | None = None,
    color_match: bool = False,
    audio_from: str | Path | None = None,
    resume: bool = True,
    cancel: threading.Event | Callable[[], bool] | None = None,
    progress: bool = True,
) -> Iterator[ClipResult | LongVideoResult]:
    """Generate `seconds` of video as 4 s clips; yield each `ClipResult` once its mp4 is written, then the result.

    masks: a MaskSet or bool [T, H, W] at `mask_fps` (None = text only). Clip k uses seed `seed + k`.
    mask_guidance_scale: the pipeline's push towards the masks (1 = off; needs masks).
    A run killed part-way resumes from its last finished clip when called again with the same settings.
    `cancel` (an Event or a callable) stops between denoising steps; finished clips stay on disk.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt is empty ({prompt!r}); describe the video to generate")
    if mask_guidance_scale != 1.0 and masks is None:
        raise ValueError("mask_guidance_scale steers towards the masks: give masks too, or leave it at 1")
    num_clips = num_clips_for(seconds)
    s = pipe.vae_scale_factor_spatial
    height = height or pipe.transformer.config.sample_height * s
    width = width or pipe.transformer.config.sample_width * s
    if start_image is not None:
        start_image = resize_frames(np.asarray(start_image, dtype=np.uint8), (height, width))
    timeline = None if masks is None else prepare_long_masks(masks, num_clips, (height, width), mask_fps)
    out_dir = Path(out_dir)
    state_dir = out_dir / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    is_cancelled = cancel.is_set if isinstance(cancel, threading.Event) else (cancel or (lambda: False))
    model_meta = dict(getattr(pipe, "mvideo_metadata", {}) or {})

    settings = {
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "seconds": seconds,
        "num_clips": num_clips,
        "fps": FPS,
        "clip_frames": CLIP_FRAMES,
        "height": height,
        "width": width,
        "seed": seed,
        "seeds": [seed + k for k in range(num_clips)],
        "num_inference_steps": num_inference_steps,
        "guidance_scale": guidance_scale,
        "use_dynamic_cfg": use_dynamic_cfg,
        "condition_size": list(condition_size) if condition_size else None,
        "color_match": color_match,
        "masks_sha1": None if timeline is None else hashlib.sha1(np.packbits(timeline).tobytes()).hexdigest(),
        "start_image_sha1": None if start_image is None else hashlib.sha1(start_image.tobytes()).hexdigest(),
        "base_model": model_meta.get("base_model"),
        "mvideo_weights": model_meta.get("mvideo_weights"),
    }
    if mask_guidance_scale != 1.0:  # recorded only when on, so records written before it existed still resume
        settings["mask_guidance_scale"] = mask_guidance_scale
    record_path = out_dir / GENERATION_FILE
    record: dict[str, Any] = {"settings": settings, "model": model_meta, "versions": _versions(), "clips": []}
    if record_path.is_file():
        old = json.loads(record_path.read_text())
        if resume and old.get("settings") != settings:
            changed = sorted(k for k in settings if old.get("settings", {}).get(k) != settings[k])
            raise ValueError(
                f"{out_dir} holds another generation (different {', '.join(changed)}); choose a new output folder "
                "or pass resume=False (--no-resume) to overwrite it"
            )
        if resume:
            record["clips"] = [c for c in old.get("clips", []) if (out_dir / c["file"]).is_file()]
    if not resume:
        for old_clip in out_dir.glob("clip_*.mp4"):
            old_clip.unlink()
        shutil.rmtree(state_dir, ignore_errors=True)
        state_dir.mkdir(parents=True)

    if not progress:
        pipe.set_progress_bar_config(disable=True)
    previous: np.ndarray | None = None  # only the last clip is kept in memory: memory does not grow with length
    reference_frame: np.ndarray | None = None  # clip 0's last frame, for drift
    drifts: list[dict[str, float]] = []
    paths: list[Path] = []
    reference_stats = None
    # The text is the same for every clip: encode it once. [1, L, D] each (negative only with guidance).
    prompt_embeds, negative_embeds = pipe.encode_prompt(
        prompt,
        negative_prompt,
        do_classifier_free_guidance=guidance_scale > 1.0,
        max_sequence_length=pipe.transformer.config.max_text_seq_length,
        dtype=pipe.transformer.dtype,
    )
    bar = tqdm(total=num_clips, desc="clips", unit="clip", disable=not progress, position=0)
    try:
        for k, (start, stop) in enumerate(clip_frame_ranges(num_clips)):
            name = f"clip_{k:03d}"
            path, state = out_dir / f"{name}.mp4", state_dir / f"{name}.npz"
            done = next((c for c in record["clips"] if c["index"] == k), None)
            if done is not None and state.is_file():  # resume: the clip was finished before the kill
                with np.load(state) as data:
                    frames = data["frames"]
                resumed, elapsed = True, float(done.get("seconds", 0.0))
            else:
                if is_cancelled():
                    return
                t0 = time.perf_counter()
                frames = _generate_clip(
                    pipe,
                    prompt_embeds,
                    negative_embeds,
                    masks=None if timeline is None else timeline[start:stop],
                    previous=previous,
                    start_image=start_image if k == 0 else None,
                    height=height,
                    width=width,
                    seed=seed + k,
                    steps=num_inference_steps,
                    guidance_scale=guidance_scale,
                    mask_guidance_scale=mask_guidance_scale,
                    use_dynamic_cfg=use_dynamic_cfg,
                    condition_size=condition_size,
                    is_cancelled=is_cancelled,
                )
                if frames is None:  # cancelled mid-clip: nothing half-made is kept
                    return
                if color_match and reference_stats is not None:
                    frames = match_colors(frames, reference_stats)
                np.savez_compressed(state, frames=frames)
                write_video(path, frames, FPS)
                resumed, elapsed = False, time.perf_counter() - t0
            if k == 0:
                reference_stats, reference_frame = lab_stats(frames), frames[-1]
            drift = color_drift(frames[-1], reference_frame)
            previous = frames
            drifts.append(drift)
            paths.append(path)
            if not resumed:
                record["clips"] = [c for c in record["clips"] if c["index"] != k]
                record["clips"].append(
                    {"index": k, "file": path.name, "seed": seed + k, "drift": drift, "seconds": round(elapsed, 3)}
                )
                _write_json(record_path, record)
            bar.update(1)
            yield ClipResult(k, num_clips, path, frames, seed + k, drift, elapsed, resumed)
    finally:
        bar.close()

    # Join from the saved clips: drop the first frame of every clip after the first (it repeats the previous
    # clip's last frame). video: [32n + 1, H, W, 3]
    video = np.empty((total_frames(num_clips), *previous.shape[1:]), dtype=np.uint8)
    for k, (start, stop) in enumerate(clip_frame_ranges(num_clips)):
        with np.load(state_dir / f"clip_{k:03d}.npz") as data:
            skip = 0 if k == 0 else 1
            video[start + skip : stop] = data["frames"][skip:]
    final = write_video(out_dir / FINAL_FILE, video, FPS, audio_from=audio_from)
    record["final"] = {"file": final.name, "num_frames": int(video.shape[0]), "audio_from": str(audio_from or "")}
    record["drift"] = {
        "max_mean_color": max(d["mean_color"] for d in drifts),
        "max_histogram": max(d["histogram"] for d in drifts),
    }
    _write_json(record_path, record)
    yield LongVideoResult(final, int(video.shape[0]), FPS, paths, record_path, drifts)


def _generate_clip(
    pipe: Any,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor | None,
    *,
    masks: np.ndarray | None,
    previous: np.ndarray | None,
    start_image: np.ndarray | None,
    height: int,
    width: int,
    seed: int,
    steps: int,
    guidance_scale: float,
    use_dynamic_cfg: bool,
    condition_size: tuple[int, int] | None,
    is_cancelled: Callable[[], bool],
    mask_guidance_scale: float = 1.0,
) -> np.ndarray | None:
    """One clip through the pipeline -> uint8 [33, H, W, 3], or None when cancelled."""

    def on_step_end(p, i, t, kwargs):
        if is_cancelled():
            p._interrupt = True
        return {}

    generator = torch.Generator(device="cpu").manual_seed(seed)
    out = pipe(
        prompt_embeds=prompt_embeds,
        negative_prompt_embeds=negative_embeds,
        masks=masks,
        height=height,
        width=width,
        num_frames=CLIP_FRAMES,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        mask_guidance_scale=mask_guidance_scale,
        use_dynamic_cfg=use_dynamic_cfg,
        generator=generator,
        start_image=start_image,
        previous_frames=previous,
        condition_size=condition_size,
        output_type="np",
        callback_on_step_end=on_step_end,
    )
    if pipe.interrupt:
        return None
    return _to_uint8(out.frames[0])


def clip_results_as_dicts(results: list[ClipResult]) -> list[dict[str, Any]]:
    """A JSON-friendly view of clip results (no frames), e.g. for a UI log."""
    return [
        {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(r).items() if k != "frames"} for r in results
    ]
