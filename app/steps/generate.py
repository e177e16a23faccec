"""Step 4, generation: check the form, pick the motion condition, and stream clips as they are finished."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.engines import EngineChoice, Engines, Generator
from app.jobs import GenerationUpdate
from app.projects import Project, atomic_path
from app.sessions import Session
from app.steps.common import StudioError, ensure_project, plural, to_json
from app.steps.edit import edited_masks
from mvideo_core.clip_spec import prepare_masks
from mvideo_core.engines import DEFAULT_ENGINE
from mvideo_core.long_video import ClipResult, generate_long_video
from mvideo_core.masks import MaskSet
from mvideo_core.settings import GenerationSettings, SettingsError
from mvideo_core.video_io import VideoError, read_image


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
    mask_policy: str = "hold"  # masks shorter than the video: see MASK_POLICIES
    engine: str = DEFAULT_ENGINE  # the engine's registry name (Engines.choices)

    def settings(self) -> dict[str, Any]:
        """The form as project.json records it (the start image is kept beside it: `save_start_image`)."""
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "seconds": self.seconds,
            "steps": self.steps,
            "guidance": self.guidance,
            "seed": self.seed,
            "mask_guidance": self.mask_guidance,
            "mask_policy": self.mask_policy,
            "engine": self.engine,
        }

    def generation_settings(self, seconds: float, size: tuple[int, int], masked: bool) -> GenerationSettings:
        """The one `GenerationSettings` this form stands for, at the model's `size` (height, width); `seconds` is the
        length to make ("stop" may end the video before the form's length); mask guidance only with masks."""
        return GenerationSettings(
            prompt=self.prompt,
            negative_prompt=self.negative_prompt or None,
            seconds=seconds,
            seed=self.seed,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            mask_guidance_scale=self.mask_guidance if masked else 1.0,  # no masks: nothing to push towards
            height=size[0],
            width=size[1],
            start_image=self.start_image,
            mask_policy=self.mask_policy,
        )


SETTING_NAMES = (
    "prompt",
    "negative_prompt",
    "steps",
    "guidance",
    "mask_guidance",
    "seed",
)  # widgets restored as saved
DRAFT_NAMES = (*SETTING_NAMES, "seconds", "mask_policy", "engine", "start_image")  # kept as the person sets them
START_IMAGE_FILE = "start_image.png"  # the form's start (or reference) image, in the project folder
MASK_POLICIES = {
    "hold": "hold the last frame",
    "loop": "loop the motion",
    "stop": "stop at the motion's end",
}


@dataclass
class MotionLength:
    """How long the motion condition is against the clips the model makes."""

    seconds: float  # the motion's length
    clips: int  # whole clips that hold it (rounded up): the default length
    whole_clips: int  # whole clips it fills completely (what "stop" generates)
    clip_seconds: float

    @property
    def default_seconds(self) -> int:
        return int(round(self.clips * self.clip_seconds))

    @property
    def fits(self) -> bool:
        """The motion is a whole number of clips: no choice to make."""
        return self.clips == self.whole_clips


def generation_explanation(engines: Engines, engine: str | None = None) -> str:
    """Why Generate cannot run here with `engine` (None: with any engine), with the flags that fix it."""
    if engine not in (None, DEFAULT_ENGINE) and engine in engines.choices:
        choice = engines.choices[engine]
        return f"{choice.short_name} is unavailable: {choice.status}."
    mvideo = engines.choices.get(DEFAULT_ENGINE)
    text = (
        f"{'Generation' if engine is None else 'MVideo'} is unavailable: "
        f"{engines.generation_status if mvideo is None else mvideo.status}. "
        "Point the studio at the weights with --base-model (CogVideoX hub id or folder) and --mvideo-weights "
        "(MVideo .safetensors), on a machine with a CUDA GPU (--device cuda); or try the whole flow with "
        "--tiny-random (tiny random-weight models on CPU, noise output)."
    )
    if engine is None:  # nothing is offered: what each other engine lacks too
        text += "".join(f" {c.short_name}: {c.status}." for c in engines.choices.values() if c is not mvideo)
    return text


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
    mask_policy: str | None = None,
    engine: str | None = None,
) -> GenerationRequest:
    """The form checked once, by the `GenerationSettings` it stands for, against the chosen engine's clips (None:
    the default engine); a bad value is named by its widget. Also explains a missing generator."""
    choice = chosen_engine(engines, engine)
    mask_policy = mask_policy or "hold"
    if mask_policy not in MASK_POLICIES:
        raise StudioError(f"when the motion is shorter, choose one of {', '.join(MASK_POLICIES)}; got {mask_policy!r}")
    start_image = read_picture(start_image)
    form = GenerationRequest(
        (prompt or "").strip(),
        (negative_prompt or "").strip(),
        _widget_number(seconds, choice.spec.clip_seconds),
        _widget_number(steps, choice.default_steps),
        _widget_number(guidance, choice.default_guidance, real=True),
        _widget_number(seed, 0),
        start_image,
        _widget_number(mask_guidance, 1.0, real=True),
        mask_policy,
        choice.name,
    )
    try:
        form.generation_settings(form.seconds, choice.size, masked=True).plan(choice.spec)
    except SettingsError as err:
        raise StudioError(f"{FIELD_LABELS.get(err.field, err.field)} {err.problem}") from err
    if form.mask_guidance != 1.0 and not choice.takes_mask_guidance:
        raise StudioError(f"mask guidance is MVideo's push towards the masks; {choice.name} has none: leave it at 1")
    return form


def chosen_engine(engines: Engines, name: str | None = None) -> EngineChoice:
    """The loaded engine `name` (None: the default one), or a message saying why it cannot generate here."""
    try:
        choice = engines.choice(name or None)
    except KeyError:
        offered = ", ".join(c.name for c in engines.offered()) or "none"
        raise StudioError(f"there is no {name!r} engine in this studio; choose one of: {offered}") from None
    if not choice.available:
        raise StudioError(generation_explanation(engines, name or None))
    return choice


# The widget that sets each GenerationSettings field, so a bad value is reported under the name the page shows.
FIELD_LABELS = {
    "prompt": "prompt",
    "negative_prompt": "negative prompt",
    "seconds": "length",
    "num_inference_steps": "steps",
    "guidance_scale": "guidance",
    "mask_guidance_scale": "mask guidance",
    "seed": "seed",
    "start_image": "start image",
}


def _widget_number(value: Any, default: float, real: bool = False) -> Any:
    """A widget's value as a number (a float where `real`, else whole floats as ints); text is read; anything else
    is passed on unchanged for GenerationSettings to refuse by name."""
    if value is None or (isinstance(value, str) and not value.strip()):
        value = default
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if real:
        return float(value)
    return int(value) if float(value).is_integer() else value


def condition_masks(engines: Engines, session: Session) -> MaskSet | None:
    """The motion condition: the edited masks when an edit exists, else the extracted ones; None = text only."""
    if session.undo is not None and session.undo.current is not None:
        return edited_masks(engines, session)
    return session.masks


def motion_length(engines: Engines, masks: MaskSet, engine: str | None = None) -> MotionLength:
    """The motion's length against the clips of `engine` (None: the default one; clips share their boundary
    frames)."""
    spec = engines.choice(engine).spec
    frames = max(1, round((masks.num_frames - 1) * spec.fps / masks.fps))  # intervals at the model's fps
    clips = max(1, math.ceil(frames / spec.stride - 1e-6))  # each clip adds `stride` frames
    return MotionLength(frames / spec.fps, clips, frames // spec.stride, spec.clip_seconds)


def model_masks(
    engines: Engines, masks: MaskSet, num_clips: int, policy: str = "loop", engine: str | None = None
) -> np.ndarray:
    """The union of `masks` prepared for `engine`'s model as every caller prepares it (`clip_spec.prepare_masks`: at
    the model's fps and size, `num_clips` clips long; shorter masks loop or hold their last frame (`policy`; "stop"
    cuts the video to the motion first, so its masks are never short)): bool [F, H, W]."""
    choice = engines.choice(engine)
    return prepare_masks(masks, choice.spec, num_clips, choice.size, policy=policy)


def save_draft(session: Session, **values: Any) -> None:
    """Generate-form fields kept in the project as the person sets them, before any Generate (reopening shows them);
    nothing before the project exists (it starts with the video), nothing when they are as saved (the page setting
    the widgets from the project on a reopen writes nothing). Values are kept as the widgets gave them: Generate
    checks them."""
    unknown = set(values) - set(DRAFT_NAMES)
    if unknown:
        raise ValueError(f"not a Generate-form field: {', '.join(sorted(unknown))}")
    project = session.project
    if project is None:
        return
    with project.lock:  # read, compare and write as one step: two fields set at once both stay
        saved = project.meta().get("generation")
        saved = saved if isinstance(saved, dict) else {}
        if any(name not in saved or saved[name] != value for name, value in values.items()):  # a restore: no write
            project.update_meta(generation={**saved, **values})


def read_picture(picture: str | Path | np.ndarray | None) -> np.ndarray | None:
    """The form's start image as uint8 RGB [H, W, 3]: the page hands over the uploaded file (decoded here, its size
    checked against the budget first), the API may hand an array (RGBA: its RGB)."""
    if picture is None or (isinstance(picture, str) and not picture):
        return None
    if isinstance(picture, (str, Path)):
        try:
            return read_image(picture)
        except VideoError as err:
            raise StudioError(f"start image: {err}") from err
    picture = np.asarray(picture)
    return picture[..., :3] if picture.ndim == 3 and picture.shape[-1] == 4 else picture


def save_start_image(project: Project, image: np.ndarray | None) -> str | None:
    """The form's start image written into the project as PNG, atomically (RGBA: its RGB); None removes it.
    Returns the file name to record, or None."""
    path = project.root / START_IMAGE_FILE
    if image is None:
        path.unlink(missing_ok=True)
        return None
    image = read_picture(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        raise StudioError(f"the start image must be an RGB picture, got an array of shape {image.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return START_IMAGE_FILE


def keep_start_image(session: Session, image: str | Path | np.ndarray | None) -> None:
    """An uploaded (or cleared) start image kept in the project at once, and named in its Generate settings."""
    if session.project is not None:
        save_draft(session, start_image=save_start_image(session.project, image))


def saved_start_image(project: Project | None, saved: dict[str, Any]) -> Path | None:
    """The start image the project's Generate settings name, when its file is there."""
    name = saved.get("start_image")
    if project is None or name != START_IMAGE_FILE:
        return None
    path = project.root / START_IMAGE_FILE
    return path if path.is_file() else None


def generation_dir(
    project: Project, form: GenerationRequest, masks: np.ndarray | None, objects: MaskSet | None = None
) -> Path:
    """One folder per distinct generation; the same settings reuse it, so a stopped run resumes its clips. Another
    engine than the default one adds its name and each object's masks (it may draw the objects apart)."""
    fields = [form.prompt, form.negative_prompt, form.seconds, form.steps, form.guidance, form.seed]
    if form.mask_guidance != 1.0:  # only when on: folders made before the setting existed keep their name
        fields.append(form.mask_guidance)
    extras = [masks, form.start_image]
    if form.engine != DEFAULT_ENGINE:  # only then: MVideo's folders keep the names they had before engines
        fields.append(form.engine)
        extras.append(None if objects is None else np.packbits(objects.masks))
    h = hashlib.sha1(to_json(fields).encode())
    for extra in extras:
        h.update(b"-" if extra is None else np.ascontiguousarray(extra).tobytes())
    return project.root / "generations" / h.hexdigest()[:12]


@dataclass
class GenerationPlan:
    """A checked generation ready to run without the page: where it writes and what conditions it."""

    project: Project
    form: GenerationRequest
    seconds: int
    masks: np.ndarray | None  # bool [F, H, W] at the model's size, or None (text only)
    out_dir: Path
    objects: MaskSet | None = None  # the masks, object by object, as the engine is given them (None: `masks`)


def plan_generation(engines: Engines, session: Session, form: GenerationRequest) -> GenerationPlan:
    """Resolve the length (a "stop" policy ends the video with the motion), the masks and the output folder, and
    record the settings in the project (reopening shows them)."""
    choice = chosen_engine(engines, form.engine)
    project = ensure_project(engines, session)
    masks = condition_masks(engines, session)
    seconds = form.seconds
    if masks is not None and form.mask_policy == "stop":
        length = motion_length(engines, masks, choice.name)
        if length.whole_clips < 1:
            raise StudioError(
                f"the motion lasts {length.seconds:.1f} s, less than one {length.clip_seconds:g} s clip, so "
                "'stop at the motion's end' leaves nothing to make; choose hold or loop"
            )
        seconds = min(seconds, int(round(length.whole_clips * length.clip_seconds)))
    num_clips = choice.spec.num_clips(seconds)
    union = None if masks is None else model_masks(engines, masks, num_clips, form.mask_policy, choice.name)
    out_dir = generation_dir(project, form, union, masks)
    project.update_meta(generation={**form.settings(), "start_image": save_start_image(project, form.start_image)})
    return GenerationPlan(project, form, seconds, union, out_dir, masks)


def run_generation(
    engines: Engines,
    generator: Generator,
    plan: GenerationPlan,
    is_cancelled: Callable[[], bool],
    on_step: Callable[[GenerationUpdate], None] | None = None,
) -> Iterator[GenerationUpdate]:
    """Stream a planned generation: one update per finished clip (its mp4 already on disk), then the outputs.

    Needs no session (it runs as a job of the project); each yielded update is also recorded in project.json.
    `on_step` gets a status line after each denoising step."""
    project, form, union = plan.project, plan.form, plan.masks
    spec = generator.spec
    num_clips = spec.num_clips(plan.seconds)
    what = "following your masks" if union is not None else "from text only (no masks yet)"
    noise = " (tiny random model: NOISE)" if engines.choice(form.engine).noise else ""
    run = str(plan.out_dir.relative_to(project.root))
    clips: list[str] = []

    def step_done(step: int) -> None:
        if on_step is not None:
            status = f"Clip {len(clips) + 1} of {num_clips}: denoising step {min(step, form.steps)} of {form.steps}"
            on_step(GenerationUpdate(status + noise, clips=tuple(clips)))

    steps = _StepCount(is_cancelled, step_done)

    def record(update: GenerationUpdate) -> GenerationUpdate:
        last = {"dir": run, "status": update.status, "state": update.state, "engine": form.engine}
        project.update_meta(last_generation=last)
        return update

    yield record(GenerationUpdate(f"Generating {plural(num_clips, 'clip')} {what}{noise}…"))
    try:
        settings = form.generation_settings(plan.seconds, spec.default_size, masked=union is not None)
        # the objects as they are (the engine brings them to its clips: MVideo takes their union, VACE draws each)
        masks, mask_fps = (union, spec.fps) if plan.objects is None else (plan.objects, plan.objects.fps)
        stream = generate_long_video(
            generator, settings, out_dir=plan.out_dir, masks=masks, mask_fps=mask_fps, cancel=steps, progress=False
        )
        for item in stream:
            if isinstance(item, ClipResult):
                clips.append(str(item.path))
                steps.calls = 0
                resumed = " (resumed from disk)" if item.resumed else ""
                yield record(
                    GenerationUpdate(
                        f"Clip {item.index + 1} of {item.num_clips} finished{resumed}{noise}",
                        clip=str(item.path),
                        clips=tuple(clips),
                    )
                )
            else:
                project.update_meta(last_generation_dir=run)
                yield record(
                    GenerationUpdate(
                        f"Done: {plural(len(clips), 'clip')}, {item.num_frames} frames at {item.fps:g} fps{noise}. "
                        f"Saved in project {project.project_id}.",
                        clips=tuple(clips),
                        final=str(item.path),
                        record=str(item.generation_json),
                        state="done",
                    )
                )
                return
    except ValueError as err:
        raise StudioError(f"generation failed: {err}") from err
    yield record(
        GenerationUpdate(
            f"Stopped after {plural(len(clips), 'finished clip')}; they are kept, and Generate with the same "
            "settings resumes.",
            clips=tuple(clips),
            state="stopped",
        )
    )


def generate(engines: Engines, session: Session, form: GenerationRequest) -> Iterator[GenerationUpdate]:
    """Plan and run a generation in the calling thread with the chosen engine (the page runs it as a job)."""
    generator = chosen_engine(engines, form.engine).generator
    session.cancel.clear()
    yield from run_generation(engines, generator, plan_generation(engines, session, form), session.cancel.is_set)


class _StepCount:
    """The cancel check `generate_long_video` makes before a clip and after each denoising step; counting its calls
    since the last finished clip gives the step for a progress line."""

    def __init__(self, is_cancelled: Callable[[], bool], report: Callable[[int], None]) -> None:
        self.is_cancelled, self.report, self.calls = is_cancelled, report, 0

    def __call__(self) -> bool:
        self.calls += 1
        if self.calls > 1:
            self.report(self.calls - 1)
        return self.is_cancelled()
