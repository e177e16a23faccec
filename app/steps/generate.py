"""Step 4, generation: check the form, pick the motion condition, and stream clips as they are finished."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.engines import Engines
from app.projects import Project
from app.sessions import Session
from app.steps.common import StudioError, ensure_project, to_json
from app.steps.edit import edited_masks
from mvideo_core.long_video import ClipResult, generate_long_video, num_clips_for
from mvideo_core.masks import MaskSet
from mvideo_core.video_io import resize_masks


@dataclass
class GenerationUpdate:
    """One step of a streamed generation: a newly finished clip, all clips so far, and at the end the outputs."""

    status: str
    clip: str | None = None
    clips: tuple[str, ...] = ()
    final: str | None = None
    record: str | None = None


@dataclass
class GenerationRequest:
    """The Generate form, checked."""

    prompt: str
    negative_prompt: str
    seconds: int
    steps: int
    guidance: float
    seed: int
    start_image: np.ndarray | None = None
    mask_guidance: float = 1.0  # the pipeline's push towards the masks; 1 = off


def generation_explanation(engines: Engines) -> str:
    """Why Generate cannot run here, with the flags that fix it."""
    return (
        f"Generation is unavailable: {engines.generation_status}. "
        "Point the studio at the weights with --base-model (CogVideoX hub id or folder) and --mvideo-weights "
        "(MVideo .safetensors), on a machine with a CUDA GPU (--device cuda); or try the whole flow with "
        "--tiny-random (tiny random-weight models on CPU, noise output)."
    )


def check_generation(
    engines: Engines,
    prompt: str,
    negative_prompt: str = "",
    seconds: float = 4,
    steps: float | None = None,
    guidance: float | None = None,
    seed: float | None = 0,
    start_image: np.ndarray | None = None,
    mask_guidance: float | None = None,
) -> GenerationRequest:
    """Validate the form with messages that say which field is wrong; also explains a missing generator."""
    s = engines.settings
    if engines.generator is None:
        raise StudioError(generation_explanation(engines))
    prompt = (prompt or "").strip()
    if not prompt:
        raise StudioError(
            "write a prompt: what the video should show, e.g. 'an astronaut doing a backflip on the moon'"
        )
    step = s.clip_seconds
    try:
        seconds_f = float(seconds)
    except (TypeError, ValueError) as err:
        raise StudioError(f"length must be a number of seconds, got {seconds!r}") from err
    if seconds_f < step or abs(seconds_f / step - round(seconds_f / step)) > 1e-6:
        raise StudioError(
            f"length must be a whole number of {step:g} s clips ({step:g}, {2 * step:g}, ...), got {seconds}"
        )
    steps = s.default_steps if steps in (None, "") else steps
    if not float(steps).is_integer() or not 1 <= int(steps) <= 500:
        raise StudioError(f"steps must be a whole number in 1..500, got {steps}")
    guidance = s.default_guidance if guidance in (None, "") else float(guidance)
    if not 0 <= guidance <= 30:
        raise StudioError(f"guidance must be in 0..30 (6 is typical; 0 or 1 turns it off), got {guidance}")
    try:
        seed_i = int(seed or 0)
    except (TypeError, ValueError) as err:
        raise StudioError(f"seed must be a whole number, got {seed!r}") from err
    try:
        mask_guidance_f = 1.0 if mask_guidance in (None, "") else float(mask_guidance)
    except (TypeError, ValueError):
        mask_guidance_f = float("nan")
    if not 1 <= mask_guidance_f <= 10:
        raise StudioError(
            f"mask guidance must be in 1..10 (1 = off, 2 pushes the video towards the masks), got {mask_guidance!r}"
        )
    if start_image is not None:
        start_image = np.asarray(start_image)
        if start_image.ndim != 3 or start_image.shape[-1] not in (3, 4) or start_image.dtype != np.uint8:
            raise StudioError(f"the start image must be an RGB picture, got an array of shape {start_image.shape}")
        start_image = start_image[..., :3]
    return GenerationRequest(prompt, (negative_prompt or "").strip(), int(round(seconds_f)), int(steps), guidance,
                             seed_i, start_image, mask_guidance_f)  # fmt: skip


def condition_masks(engines: Engines, session: Session) -> MaskSet | None:
    """The motion condition: the edited masks when an edit exists, else the extracted ones; None = text only."""
    if session.undo is not None and session.undo.current is not None:
        return edited_masks(engines, session)
    return session.masks


def model_masks(engines: Engines, masks: MaskSet, num_frames: int) -> np.ndarray:
    """The union of `masks` at the model's size, looped or cut to `num_frames`: bool [F, H, W]."""
    union = masks.union()  # bool [T, H, W]
    if tuple(union.shape[1:]) != tuple(engines.settings.model_size):
        union = resize_masks(union, engines.settings.model_size, fit="crop")
    return union[np.arange(num_frames) % len(union)]


def generation_dir(project: Project, form: GenerationRequest, masks: np.ndarray | None) -> Path:
    """One folder per distinct generation; the same settings reuse it, so a stopped run resumes its clips."""
    fields = [form.prompt, form.negative_prompt, form.seconds, form.steps, form.guidance, form.seed]
    if form.mask_guidance != 1.0:  # only when on: folders made before the setting existed keep their name
        fields.append(form.mask_guidance)
    h = hashlib.sha1(to_json(fields).encode())
    for extra in (masks, form.start_image):
        h.update(b"-" if extra is None else np.ascontiguousarray(extra).tobytes())
    return project.root / "generations" / h.hexdigest()[:12]


def generate(engines: Engines, session: Session, form: GenerationRequest) -> Iterator[GenerationUpdate]:
    """Stream a generation: one update per finished clip (its mp4 already on disk), then the final outputs."""
    project = ensure_project(engines, session)
    masks = condition_masks(engines, session)
    num_clips = num_clips_for(form.seconds)
    union = None if masks is None else model_masks(engines, masks, 32 * num_clips + 1)
    out_dir = generation_dir(project, form, union)
    h, w = engines.settings.model_size
    what = "following your masks" if union is not None else "from text only (no masks yet)"
    noise = " (tiny random model: NOISE)" if engines.settings.tiny_random else ""
    yield GenerationUpdate(f"Generating {num_clips} clip(s) {what}{noise}…")
    session.cancel.clear()
    clips: list[str] = []
    try:
        stream = generate_long_video(
            engines.generator,
            form.prompt,
            out_dir=out_dir,
            seconds=form.seconds,
            masks=union,
            mask_fps=engines.settings.model_fps,
            negative_prompt=form.negative_prompt or None,
            seed=form.seed,
            num_inference_steps=form.steps,
            guidance_scale=form.guidance,
            mask_guidance_scale=form.mask_guidance if union is not None else 1.0,  # no masks: nothing to push towards
            height=h,
            width=w,
            start_image=form.start_image,
            cancel=session.cancel,
        )
        for item in stream:
            if isinstance(item, ClipResult):
                clips.append(str(item.path))
                resumed = " (resumed from disk)" if item.resumed else ""
                yield GenerationUpdate(
                    f"Clip {item.index + 1} of {item.num_clips} finished{resumed}{noise}",
                    clip=str(item.path),
                    clips=tuple(clips),
                )
            else:
                project.update_meta(last_generation=str(out_dir.relative_to(project.root)))
                yield GenerationUpdate(
                    f"Done: {len(clips)} clip(s), {item.num_frames} frames at {item.fps:g} fps{noise}. "
                    f"Saved in project {project.project_id}.",
                    clips=tuple(clips),
                    final=str(item.path),
                    record=str(item.generation_json),
                )
                return
    except ValueError as err:
        raise StudioError(f"generation failed: {err}") from err
    yield GenerationUpdate(
        f"Stopped after {len(clips)} finished clip(s); they are kept, and Generate with the same settings resumes.",
        clips=tuple(clips),
    )
