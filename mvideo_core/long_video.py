"""Long videos clip by clip (paper 3.3), each clip written to disk and yielded as soon as it is finished.

Every engine goes through `generate_long_video` (see `mvideo_core.engines`); the engine's `ClipSpec` sets the
timeline (`mvideo_core.clip_spec`): clip k > 0 starts with the last `overlap_frames` frames of clip k - 1 and every
clip adds `stride` frames, so n clips make stride * n + 1 frames. For MVideo on CogVideoX clips are t1 = 4 s = 33
frames at 8 fps sharing one frame: clip k covers [32k, 32k + 33) and is conditioned on clip k-1 (its last frame at
full resolution for appearance, all 33 frames at low resolution for motion, the previous t2 = 4 s). In the final video the shared frames of every clip
after the first are dropped. Clip k takes the masks of its frames. Training cuts samples the same way
(`clip_frame_ranges`, `condition_window`).

Files in `out_dir`: `clip_000.mp4` ... (each written before it is yielded), `final.mp4` (with the source's audio when
asked), `generation.json` (the `GenerationSettings`, seeds, the engine and its model ids, versions, per-clip colour
drift) and `.state/clip_000.npz` (the exact frames, so a killed run resumes from its last finished clip with the same
result).

Colour drift. Recursive generation tends to drift in colour. Each clip's last frame is compared with clip 0's last frame
(distance of mean RGB colour in [0, 1] and histogram distance in [0, 1]); `color_match=True` keeps drift in check by
matching each clip's per-channel Lab mean / std to clip 0's before it is written and used as the next condition.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from mvideo_core import __version__
from mvideo_core.budget import Budget
from mvideo_core.clip_spec import COGVIDEOX_CLIP, ClipSpec
from mvideo_core.engines import GenerationEngine, as_engine
from mvideo_core.masks import MaskSet, as_bool_masks
from mvideo_core.settings import GenerationSettings
from mvideo_core.video_io import VideoError, read_video, write_video
from mvideo_core.weights import model_identity

# MVideo's CogVideoX clip (mvideo_core.clip_spec.COGVIDEOX_CLIP), for code that has no loaded model.
logger = logging.getLogger(__name__)

FPS = COGVIDEOX_CLIP.fps
CLIP_FRAMES = COGVIDEOX_CLIP.clip_frames
CLIP_SECONDS = int(COGVIDEOX_CLIP.clip_seconds)
GENERATION_FILE = "generation.json"
FINAL_FILE = "final.mp4"
STATE_DIR = ".state"


@dataclass
class ClipResult:
    """One finished clip: its mp4 (already on disk), its frames uint8 [F, H, W, 3] and its colour drift vs clip 0."""

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


# -- timeline (MVideo's CogVideoX clips unless a spec is given) ------------------------------------------------------


def num_clips_for(seconds: float, spec: ClipSpec = COGVIDEOX_CLIP) -> int:
    """Number of clips in `seconds` (a positive whole multiple of the clip length, 4 s for CogVideoX)."""
    return spec.num_clips(seconds)


def total_frames(num_clips: int, spec: ClipSpec = COGVIDEOX_CLIP) -> int:
    """Frames of the final video: 32 n + 1 for CogVideoX."""
    return spec.total_frames(num_clips)


def clip_frame_ranges(num_clips: int, spec: ClipSpec = COGVIDEOX_CLIP) -> list[tuple[int, int]]:
    """[start, stop) of each clip on the output timeline: clip k = [32k, 32k + 33) for CogVideoX."""
    return spec.clip_ranges(num_clips)


def condition_window(clip_start: int, spec: ClipSpec = COGVIDEOX_CLIP) -> tuple[int, tuple[int, int]]:
    """MVideo's conditions for a clip starting at frame s > 0: (appearance frame index, [start, stop) of the motion
    frames) = (s, [s - stride, s + 1)), i.e. (s, [s-32, s+1)) for CogVideoX."""
    if clip_start < spec.stride:
        raise ValueError(
            f"a clip starting at frame {clip_start} has no previous {spec.clip_seconds:g} s to condition on"
        )
    return clip_start, (clip_start - spec.stride, clip_start + 1)


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


# -- generation -----------------------------------------------------------------------------------------------------

_ANY = object()
# Record keys added after records were first written, with the value an old record meant by leaving them out: an old
# record resumes when the new settings leave them at that value. How masks were prepared (policy, fit) shows in
# `masks_sha1` already, so any value matches an old record there.
_LEGACY_RECORD_DEFAULTS: dict[str, Any] = {
    "engine": "mvideo",
    "mask_guidance_scale": 1.0,
    "mask_policy": _ANY,
    "mask_fit": _ANY,
}


_MODEL_KEYS = ("base_model", "mvideo_weights")


def _same_model(old: Any, new: Any) -> bool:
    """Records written before models had a stable identity hold the path they were loaded from: the same model when
    that path still holds the same content."""
    return isinstance(old, str) and Path(old).exists() and model_identity(old) == new


def _changed_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names of the settings that differ between an old record and the new one."""
    changed = []
    for key, value in new.items():
        if key not in old and key in _LEGACY_RECORD_DEFAULTS:
            if _LEGACY_RECORD_DEFAULTS[key] not in (_ANY, value):
                changed.append(key)
        elif old.get(key) != value and not (key in _MODEL_KEYS and _same_model(old.get(key), value)):
            changed.append(key)
    return sorted(changed + [k for k in old if k not in new])


def generate_long_video(
    engine: GenerationEngine | Any,
    settings: GenerationSettings | str,
    *,
    out_dir: str | Path,
    masks: MaskSet | np.ndarray | None = None,
    mask_fps: float | None = None,
    audio_from: str | Path | None = None,
    resume: bool = True,
    cancel: threading.Event | Callable[[], bool] | None = None,
    progress: bool = True,
    budget: Budget | None = None,
    masks_from: dict[str, Any] | None = None,
    **setting_values: Any,
) -> Iterator[ClipResult | LongVideoResult]:
    """Generate a long video clip by clip; yield each `ClipResult` once its mp4 is written, then the result.

    engine: a `GenerationEngine` (or a pipeline one wraps, e.g. an `MVideoPipeline`).
    settings: a `GenerationSettings`, or a prompt with the settings' fields as keywords (`seconds=8, seed=1, ...`).
    masks: a MaskSet or bool [T, H, W] at `mask_fps` (default: the engine's fps); None = text only.
    Clip k uses seed `seed + k`. A run killed part-way resumes from its last finished clip when called again with the
    same settings. `cancel` (an Event or a callable) stops between denoising steps; finished clips stay on disk.
    `budget` bounds the video's frames before anything is allocated (default: the process's, `mvideo_core.budget`).
    `masks_from` says how the masks were made (e.g. the edit recipe and its source files); recorded as it is.
    """
    engine = as_engine(engine)
    if isinstance(settings, GenerationSettings):
        if setting_values:
            raise TypeError(f"pass settings either as GenerationSettings or as keywords, not both: {setting_values}")
    else:
        settings = GenerationSettings(prompt=settings, **setting_values)
    if masks is not None and not isinstance(masks, MaskSet):
        masks = MaskSet(as_bool_masks(masks, 3)[None], fps=mask_fps or engine.spec.fps)
    prepared = engine.prepare(masks, settings, budget=budget)
    spec, settings, num_clips = prepared.spec, prepared.settings, prepared.num_clips
    out_dir = Path(out_dir)
    state_dir = out_dir / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    is_cancelled = cancel.is_set if isinstance(cancel, threading.Event) else (cancel or (lambda: False))
    identity = engine.identity

    record_settings = {
        **settings.to_record(),
        "num_clips": num_clips,
        "fps": spec.fps,
        "clip_frames": spec.clip_frames,
        "seeds": [settings.seed + k for k in range(num_clips)],
        "masks_sha1": prepared.masks_sha1,
        "start_image_sha1": prepared.start_image_sha1,
        **identity,
    }
    record_path = out_dir / GENERATION_FILE
    record: dict[str, Any] = {
        "settings": record_settings,
        "model": engine.metadata,
        "versions": _versions(),
        "clips": [],
    }
    if masks_from is not None:
        record["masks_from"] = masks_from
    old = _read_record(record_path) if resume else None
    if old is not None:
        changed = _changed_settings(old.get("settings", {}), record_settings)
        if changed:
            raise ValueError(
                f"{out_dir} holds another generation (different {', '.join(changed)}); choose a new output folder "
                "or pass resume=False (--no-resume) to overwrite it"
            )
        record["clips"] = [c for c in old.get("clips", []) if isinstance(c, dict) and {"index", "file"} <= set(c)]
        if old.get("final") and not any(state_dir.glob("clip_*.npz")):  # finished before (states pruned)
            if _is_finished(out_dir, record["clips"], spec, num_clips):
                yield from _replay_finished(out_dir, record["clips"], spec, num_clips)
                return
            record["clips"] = []  # the exact frames are gone and a video is torn: start over
    else:
        for old_file in (*out_dir.glob("clip_*.mp4"), out_dir / FINAL_FILE):
            old_file.unlink(missing_ok=True)
        shutil.rmtree(state_dir, ignore_errors=True)
        state_dir.mkdir(parents=True)

    if not progress:
        engine.set_progress(False)
    previous: np.ndarray | None = None  # only the last clip is kept in memory: memory does not grow with length
    reference_frame: np.ndarray | None = None  # clip 0's last frame, for drift
    drifts: list[dict[str, float]] = []
    paths: list[Path] = []
    reference_stats = None
    ranges = spec.clip_ranges(num_clips)  # clip k: frames [start, stop) of the video
    bar = tqdm(total=num_clips, desc="clips", unit="clip", disable=not progress, position=0)
    try:
        for k in range(num_clips):
            name = f"clip_{k:03d}"
            path, state = out_dir / f"{name}.mp4", state_dir / f"{name}.npz"
            done = next((c for c in record["clips"] if c["index"] == k), None)
            # resume: a listed clip counts only when its exact frames load and match the record; a torn clip is made
            # again, and so is every clip after it (they were conditioned on it)
            shape = (ranges[k][1] - ranges[k][0], *prepared.size, 3)
            frames = None if done is None else _verified_clip(done, path, state, shape, spec.fps)
            if frames is not None:
                resumed, elapsed = True, float(done.get("seconds", 0.0))
            else:
                record["clips"] = [c for c in record["clips"] if c["index"] < k]
                if is_cancelled():
                    return
                t0 = time.perf_counter()
                frames = engine.generate_clip(prepared, k, previous, seed=settings.seed + k, is_cancelled=is_cancelled)
                if frames is None:  # cancelled mid-clip: nothing half-made is kept
                    return
                if settings.color_match and reference_stats is not None:
                    frames = match_colors(frames, reference_stats)
                _save_state(state, frames)
                write_video(path, frames, spec.fps)
                resumed, elapsed = False, time.perf_counter() - t0
            if k == 0:
                reference_stats, reference_frame = lab_stats(frames), frames[-1]
            drift = color_drift(frames[-1], reference_frame)
            previous = frames
            drifts.append(drift)
            paths.append(path)
            if not resumed:
                record["clips"].append(
                    {
                        "index": k,
                        "file": path.name,
                        "seed": settings.seed + k,
                        "drift": drift,
                        "seconds": round(elapsed, 3),
                        "frames_sha1": _frames_sha1(frames),
                    }
                )
                _write_json(record_path, record)
            bar.update(1)
            yield ClipResult(k, num_clips, path, frames, settings.seed + k, drift, elapsed, resumed)
    finally:
        bar.close()

    # Join from the saved clips: drop the frames every clip after the first shares with the one before it.
    # video: [stride * n + 1, H, W, 3]
    video = np.empty((spec.total_frames(num_clips), *previous.shape[1:]), dtype=np.uint8)
    for k, (start, stop) in enumerate(spec.clip_ranges(num_clips)):
        with np.load(state_dir / f"clip_{k:03d}.npz") as data:
            skip = 0 if k == 0 else spec.overlap_frames
            video[start + skip : stop] = data["frames"][skip:]
    final = write_video(out_dir / FINAL_FILE, video, spec.fps, audio_from=audio_from)
    record["final"] = {"file": final.name, "num_frames": int(video.shape[0]), "audio_from": str(audio_from or "")}
    record["drift"] = {
        "max_mean_color": max(d["mean_color"] for d in drifts),
        "max_histogram": max(d["histogram"] for d in drifts),
    }
    _write_json(record_path, record)
    shutil.rmtree(state_dir, ignore_errors=True)  # final.mp4 and the record are written: resume needs no states now
    yield LongVideoResult(final, int(video.shape[0]), spec.fps, paths, record_path, drifts)


# -- resume ---------------------------------------------------------------------------------------------------------


def _frames_sha1(frames: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(frames).tobytes()).hexdigest()


def _save_state(path: Path, frames: np.ndarray) -> None:
    """The exact frames of a clip, written atomically (a kill leaves the old file or none, never half of one)."""
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, frames=frames)
    tmp.replace(path)


def _read_record(path: Path) -> dict[str, Any] | None:
    """The record of an earlier run, or None when there is none or it cannot be read (then the run starts over)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        logger.warning("%s cannot be read (%s): starting over", path, err)
        return None
    return record if isinstance(record, dict) else None


def _decoded_frames(path: Path) -> int:
    """How many frames of a video file decode (0 when none do)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a torn file warns while decoding; the count says it
            return read_video(path).num_frames
    except (VideoError, OSError, ValueError):
        return 0


def _verified_clip(
    entry: dict[str, Any], path: Path, state: Path, shape: tuple[int, ...], fps: float
) -> np.ndarray | None:
    """The exact frames of a listed clip when its state loads with the recorded shape and checksum (its mp4 is
    written again from them when torn); None when the clip has to be made again."""
    try:
        with np.load(state) as data:
            frames = data["frames"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        logger.warning("%s is torn or missing (%s): making clip %s again", state.name, err, entry.get("index"))
        return None
    if frames.shape != shape or frames.dtype != np.uint8:
        return None
    if entry.get("frames_sha1") not in (None, _frames_sha1(frames)):  # (records before checksums: shape only)
        logger.warning("%s does not match its checksum: making clip %s again", state.name, entry.get("index"))
        return None
    if _decoded_frames(path) != shape[0]:
        logger.warning("%s is torn: writing it again from the exact frames", path.name)
        write_video(path, frames, fps)
    return frames


def _is_finished(out_dir: Path, clips: list[dict[str, Any]], spec: ClipSpec, num_clips: int) -> bool:
    """Whether a generation finished earlier (its states pruned) left every clip and final.mp4 whole."""
    if sorted(c["index"] for c in clips) != list(range(num_clips)):
        return False
    videos = [(out_dir / FINAL_FILE, spec.total_frames(num_clips))]
    ranges = spec.clip_ranges(num_clips)
    videos += [(out_dir / c["file"], ranges[c["index"]][1] - ranges[c["index"]][0]) for c in clips]
    return all(_decoded_frames(path) == frames for path, frames in videos)


def _replay_finished(
    out_dir: Path, clips: list[dict[str, Any]], spec: ClipSpec, num_clips: int
) -> Iterator[ClipResult | LongVideoResult]:
    """The results of a finished generation read back from its videos (decoded frames: the exact ones are pruned)."""
    paths, drifts = [], []
    for entry in sorted(clips, key=lambda c: c["index"]):
        path, drift = out_dir / entry["file"], entry.get("drift", {})
        paths.append(path)
        drifts.append(drift)
        frames = read_video(path).frames
        yield ClipResult(
            entry["index"], num_clips, path, frames, entry.get("seed", 0), drift, entry.get("seconds", 0.0), True
        )
    num_frames = spec.total_frames(num_clips)
    yield LongVideoResult(out_dir / FINAL_FILE, num_frames, spec.fps, paths, out_dir / GENERATION_FILE, drifts)
