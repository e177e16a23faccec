"""Tab 4, generation: prompt and settings, the length against the motion, a player fed clip by clip, the gallery of
clips and the final files. A generation runs as a job of the project (app.jobs): reloading or closing the page does
not stop it, and any page that opens the project follows it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.components import Component

from app.engines import EngineChoice, generator_lines, gpu_function
from app.jobs import GenerationUpdate, Job, JobRunner
from app.projects import ProjectDamaged
from app.sessions import Session
from app.steps import generate as step
from app.steps.common import StudioError, plural
from app.tabs.common import StudioContext, Updates, user_errors

# On a ZeroGPU Space each Generate call holds a GPU for at most this long (a 16 s video on an A100-class GPU).
KEEP = object()  # engine_view: leave the start image as it is
GPU_SECONDS = int(os.environ.get("MVIDEO_GPU_SECONDS", "600"))
MAX_CLIPS_OFFERED = 8


@dataclass
class GenerateTab:
    status: gr.Markdown
    engine: gr.Radio
    engine_note: gr.Markdown
    prompt: gr.Textbox
    negative: gr.Textbox
    seconds: gr.Slider
    length_note: gr.Markdown
    mask_policy: gr.Radio
    steps: gr.Slider
    guidance: gr.Slider
    mask_guidance: gr.Slider
    seed: gr.Number
    start_image: gr.Image
    go: gr.Button
    stop: gr.Button
    progress: gr.Markdown
    stream: gr.Video
    gallery: gr.Gallery
    files: gr.File

    def settings_outputs(self) -> list[Component]:
        return [self.prompt, self.negative, self.steps, self.guidance, self.mask_guidance, self.seed]

    def length_outputs(self) -> list[Component]:
        return [self.seconds, self.length_note, self.mask_policy]

    def engine_outputs(self) -> list[Component]:
        return [self.engine, self.engine_note, self.mask_guidance, self.start_image]

    def outputs(self) -> list[Component]:
        """What `view` sets."""
        return [
            *self.settings_outputs(), *self.engine_outputs(), *self.length_outputs(), self.progress, self.gallery,
            self.files,
        ]  # fmt: skip

    def engine_view(
        self,
        ctx: StudioContext,
        name: str | None,
        restoring: bool = False,
        mask_guidance: float | None = None,
        picture: Any = KEEP,
    ) -> Updates:
        """The engine choice set to `name` (the default one where it is not offered), what that engine makes, and the
        widgets that depend on it (mask guidance is MVideo's, set to `mask_guidance` where given; VACE takes the start
        image as a reference image; the image is set to `picture` where given, a path or None)."""
        offered = {c.name: c for c in ctx.engines.offered()}
        if not offered:
            return {self.engine: gr.Radio(visible=False), self.engine_note: ""}
        choice = offered.get(name) or ctx.engines.choice()
        note = f"**{choice.label}**: {choice.describe()}."
        if name and name not in offered and restoring:
            note += f" This project last generated with {name}, which is not loaded in this studio now."
        label = "Reference image (optional: the look of the subject or scene)" if _takes_reference(choice) else None
        return {
            self.engine: gr.Radio(value=choice.name),
            self.engine_note: note,
            self.mask_guidance: _mask_guidance_view(choice, mask_guidance),
            self.start_image: gr.Image(label=label or "Start image (optional)")
            if picture is KEEP
            else gr.Image(label=label or "Start image (optional)", value=picture),
        }

    def view(self, ctx: StudioContext, session: Session, jobs: JobRunner) -> Updates:
        """The tab as the project holds it: the last settings, the length against the motion, the clips finished so
        far, the final files and where the last generation stands (running, done, stopped or interrupted)."""
        meta: dict[str, Any] = {}
        if session.project is not None:
            try:
                meta = session.project.meta()
            except ProjectDamaged:
                meta = {}
        saved = meta.get("generation") or {}
        updates: Updates = {}
        if "seconds" in saved:
            session.length_chosen = True
            for component, name in zip(self.settings_outputs(), step.SETTING_NAMES, strict=True):
                if name in saved:
                    updates[component] = saved[name]
        engine = saved.get("engine")
        picture = step.saved_start_image(session.project, saved)  # None: another project's must not linger
        updates.update(
            self.engine_view(
                ctx, engine, restoring=True, mask_guidance=saved.get("mask_guidance"), picture=picture and str(picture)
            )
        )
        offered = engine in {c.name for c in ctx.engines.offered()}
        updates.update(
            self.length_view(
                ctx, session, saved.get("seconds"), saved.get("mask_policy") or "hold", engine if offered else None
            )
        )
        last = meta.get("last_generation") or {}
        job = jobs.job(session.project.project_id) if session.project is not None else None
        progress = ""
        if job is not None and job.latest is not None:
            progress = job.latest.status
        elif last:
            progress = last.get("status", "")
            if last.get("state") == "running":
                progress = (
                    f"{progress}\n\nThis generation was interrupted (the studio stopped); Generate with the same "
                    "settings resumes it from its last finished clip."
                )
        clips, files = [], []
        if session.project is not None and last.get("dir"):
            folder = session.project.root / str(last["dir"])
            if session.project.contains(folder):
                clips = [str(p) for p in sorted(folder.glob("clip_*.mp4"))]
                files = [str(p) for p in (folder / "final.mp4", folder / "generation.json") if p.is_file()]
        updates[self.progress] = progress
        updates[self.gallery] = clips
        updates[self.files] = files if len(files) == 2 else None
        return updates

    def length_view(
        self,
        ctx: StudioContext,
        session: Session,
        seconds: float | None = None,
        policy: str | None = None,
        engine: str | None = None,
    ) -> Updates:
        """The length slider in whole clips of `engine` (None: the default one), defaulting to the motion's length,
        and the choice for the time after the motion ends (shown only when the video outlasts the motion)."""
        length, clip = motion(ctx, session, engine)
        if seconds is None and length is not None and not session.length_chosen:
            seconds = length.default_seconds
        top = max(MAX_CLIPS_OFFERED, length.clips if length is not None else 0) * clip
        slider = gr.Slider(clip, top, step=clip, value=seconds) if seconds else gr.Slider(clip, top, step=clip)
        return {self.seconds: slider, **self.length_note_view(length, clip, seconds, policy)}

    def length_note_view(
        self, length: step.MotionLength | None, clip: float, seconds: float | None, policy: str | None = None
    ) -> Updates:
        """What the length does with the motion, and the choice for the time after the motion ends, shown whenever
        the video (`seconds`; None: as long as its whole clips) outlasts the motion."""
        if length is None:
            return {
                self.length_note: "No masks yet: the video follows the text only.",
                self.mask_policy: gr.Radio(visible=False),
            }
        note = f"The motion lasts {length.seconds:.1f} s: {plural(length.clips, 'clip')} of {clip:g} s hold it"
        video = float(seconds) if seconds else length.default_seconds
        outlasts = video > length.seconds + 1e-6
        if outlasts and video > length.default_seconds:
            note += f"; the video is {video:g} s, so after the motion ends:"
        elif outlasts:
            note += "; after it ends:"
        elif video < length.seconds - 1e-6:
            note += f"; the video ({video:g} s) ends before the motion does."
        else:
            note += "."
        radio = gr.Radio(visible=outlasts, value=policy) if policy else gr.Radio(visible=outlasts)
        return {self.length_note: note, self.mask_policy: radio}

    def shown(self, update: GenerationUpdate, clips_before: int = -1) -> Updates:
        """One update of a running generation; the gallery is resent only when a clip was added."""
        out: Updates = {self.progress: update.status, self.stream: update.clip}
        if len(update.clips) != clips_before:
            out[self.gallery] = list(update.clips)
        files = [f for f in (update.final, update.record) if f]
        out[self.files] = files or gr.skip()
        return out


def motion(ctx: StudioContext, session: Session, engine: str | None) -> tuple[step.MotionLength | None, float]:
    """The session's motion against `engine`'s clips (None, or not loaded: the default one; no masks: None), and
    that engine's clip length in seconds."""
    try:
        clip = ctx.engines.choice(engine).spec.clip_seconds
    except KeyError:
        engine, clip = None, ctx.engines.choice().spec.clip_seconds
    try:
        masks = step.condition_masks(ctx.engines, session)
    except StudioError:  # an edit that does not render: Generate will say so
        masks = None
    return (None if masks is None else step.motion_length(ctx.engines, masks, engine)), clip


def build_generate_tab(ctx: StudioContext) -> GenerateTab:
    engines = ctx.engines
    offered = engines.offered()
    default = engines.choice() if offered else None
    ready = default is not None
    status = gr.Markdown(
        generator_lines(engines) if ready else step.generation_explanation(engines), elem_id="gen-status"
    )
    with gr.Row():
        with gr.Column(scale=2):
            engine = gr.Radio(
                [(c.label, c.name) for c in offered],
                value=default.name if ready else None,
                label="Engine (only those whose weights are loaded are offered; the others say why above)",
                visible=ready,
                elem_id="gen-engine",
            )
            engine_note = gr.Markdown(
                f"**{default.label}**: {default.describe()}." if ready else "", elem_id="gen-engine-note"
            )
            prompt = gr.Textbox(
                label="Prompt", lines=3, placeholder="an astronaut doing a backflip on the moon", elem_id="gen-prompt"
            )
            negative = gr.Textbox(label="Negative prompt", lines=1, placeholder="blurry, distorted")
            clip = int(default.spec.clip_seconds if ready else engines.settings.clip_seconds)
            seconds = gr.Slider(
                clip, MAX_CLIPS_OFFERED * clip, value=2 * clip, step=clip, label="Length (s, whole clips)",
                elem_id="gen-seconds",
            )  # fmt: skip
            length_note = gr.Markdown("No masks yet: the video follows the text only.", elem_id="gen-length-note")
            mask_policy = gr.Radio(
                [(label, name) for name, label in step.MASK_POLICIES.items()],
                value="hold",
                label="When the video is longer than the motion",
                visible=False,
                elem_id="gen-mask-policy",
            )
            with gr.Row():
                steps = gr.Slider(
                    1, 100, value=default.default_steps if ready else 50, step=1, label="Steps", elem_id="gen-steps"
                )
                guidance = gr.Slider(
                    0, 15, value=default.default_guidance if ready else 6.0, step=0.5, label="Guidance",
                    elem_id="gen-guidance",
                )  # fmt: skip
                mask_guidance = gr.Slider(
                    1, 5, value=1.0, step=0.5, label="Mask guidance (1 = off)", elem_id="gen-mask-guidance",
                    visible=not ready or default.takes_mask_guidance,
                )  # fmt: skip
                seed = gr.Number(label="Seed", value=0, precision=0, elem_id="gen-seed")
            start_image = gr.Image(
                label="Reference image (optional: the look of the subject or scene)"
                if ready and _takes_reference(default)
                else "Start image (optional)",
                type="filepath",  # decoded by the studio, its declared size checked against the budget first
                image_mode=None,  # Gradio would decode it to convert it
                sources=["upload"],
                height=240,  # a small picture is shown whole, not squeezed under its label
                elem_id="gen-start-image",
            )
            with gr.Row():
                go = gr.Button("Generate", variant="primary", interactive=ready, elem_id="generate")
                stop = gr.Button("Stop", elem_id="stop-generate")
        with gr.Column(scale=3):
            progress = gr.Markdown("", elem_id="gen-progress")
            stream = gr.Video(
                label="Streaming: each clip plays as soon as it is finished",
                streaming=True,
                autoplay=True,
                interactive=False,
                elem_id="gen-stream",
            )
            gallery = gr.Gallery(label="Finished clips", columns=4, height=200, elem_id="gen-gallery")
            files = gr.File(
                label="Final video and generation.json", file_count="multiple", interactive=False, elem_id="gen-files"
            )
    return GenerateTab(
        status, engine, engine_note, prompt, negative, seconds, length_note, mask_policy, steps, guidance, mask_guidance, seed, start_image,
        go, stop, progress, stream, gallery, files,
    )  # fmt: skip


def _mask_guidance_view(choice: EngineChoice, value: float | None) -> gr.Slider:
    """Mask guidance shown for the engines that take it (at `value` where given), else hidden and off."""
    if not choice.takes_mask_guidance:
        return gr.Slider(value=1.0, visible=False)
    return gr.Slider(visible=True) if value is None else gr.Slider(value=value, visible=True)


def _takes_reference(choice: EngineChoice) -> bool:
    """The engine takes the start image as a reference image (VACE), not as the first frame."""
    return bool(getattr(choice.generator, "takes_reference_images", False))


def follow(tab: GenerateTab, job: Job):
    """Stream a job's updates to the tab until it ends (the job goes on if the page goes away)."""
    clips = -1
    for update in job.follow():
        yield tab.shown(update, clips)
        clips = len(update.clips)


def wire_generate_tab(ctx: StudioContext, tab: GenerateTab, jobs: JobRunner, tab_selected: Any) -> None:
    """Generate starts (or re-attaches to) the project's job and follows it; Stop cancels that job only.
    `tab_selected` is the Generate tab's select event, which refreshes the default length."""
    engines = ctx.engines
    form = [tab.prompt, tab.negative, tab.seconds, tab.steps, tab.guidance, tab.seed, tab.start_image]
    form += [tab.mask_guidance, tab.mask_policy, tab.engine]
    live = [tab.progress, tab.stream, tab.gallery, tab.files]

    @gpu_function(duration=GPU_SECONDS)
    def generate_clips(generator, job: Job, plan: step.GenerationPlan):
        """The work of a job: the model runs here (on ZeroGPU inside `spaces.GPU`)."""
        yield from step.run_generation(engines, generator, plan, job.cancel.is_set, on_step=job.publish)

    @user_errors
    def run(prompt, negative, seconds, steps, guidance, seed, start_image, mask_guidance, mask_policy, engine, request: gr.Request):  # fmt: skip
        session = ctx.session(request)
        checked = step.check_generation(
            engines, prompt, negative, seconds, steps, guidance, seed, start_image, mask_guidance, mask_policy, engine
        )
        plan = step.plan_generation(engines, session, checked)
        work = lambda gen, job: generate_clips(gen, job, plan)  # noqa: E731
        job = jobs.submit(plan.project.project_id, plan.out_dir, work, engine=checked.engine)
        yield from follow(tab, job)

    tab.go.click(run, form, live, concurrency_limit=None)  # it only follows the job; jobs.workers bound the work

    def stop(request: gr.Request) -> Updates:
        session = ctx.session(request)
        job = jobs.running(session.project.project_id) if session.project is not None else None
        if job is None:
            return {tab.progress: "Nothing is generating in this project."}
        job.cancel.set()
        return {tab.progress: "Stopping after the current denoising step; finished clips are kept in the project."}

    tab.stop.click(stop, None, [tab.progress], queue=False)

    # Every field is kept in the project as it is set (a reload or a reopen shows it before any Generate). Textboxes
    # on `change` (their `input` is sent only for keys typed, not for a paste or an autofill; a reopen setting them to
    # what is saved writes nothing: save_draft writes only what differs), the other widgets on `input` (the person's
    # own changes, not the page setting defaults).
    def keep(name: str):
        @user_errors
        def save(value: Any, request: gr.Request) -> None:
            step.save_draft(ctx.session(request), **{name: value})

        return save

    for component, name in ((tab.prompt, "prompt"), (tab.negative, "negative_prompt")):
        component.change(keep(name), [component], None, trigger_mode="always_last", show_progress="hidden")
    fields = {tab.steps: "steps", tab.guidance: "guidance", tab.mask_guidance: "mask_guidance", tab.seed: "seed"}
    for component, name in {**fields, tab.mask_policy: "mask_policy"}.items():
        component.input(keep(name), [component], None, trigger_mode="always_last", show_progress="hidden")

    @user_errors
    def on_seconds(seconds: float, policy: str, engine: str | None, request: gr.Request) -> Updates:
        """The length chosen by hand: kept, and what it does with the motion (the choice after it ends, if any)."""
        session = ctx.session(request)
        session.length_chosen = True
        step.save_draft(session, seconds=seconds)
        return tab.length_note_view(*motion(ctx, session, engine or None), seconds, policy)

    length_notes = [tab.length_note, tab.mask_policy]
    tab.seconds.input(on_seconds, [tab.seconds, tab.mask_policy, tab.engine], length_notes, show_progress="hidden")

    @user_errors
    def keep_picture(image: Any, request: gr.Request) -> None:
        step.keep_start_image(ctx.session(request), image)

    @user_errors
    def drop_picture(request: gr.Request) -> None:
        step.keep_start_image(ctx.session(request), None)

    tab.start_image.upload(keep_picture, [tab.start_image], None, show_progress="hidden")
    tab.start_image.clear(drop_picture, None, None, show_progress="hidden")

    @user_errors
    def on_engine(name: str, seconds: float, policy: str, request: gr.Request) -> Updates:
        """Another engine chosen: its defaults, its clip length and the widgets only it has."""
        choice = step.chosen_engine(engines, name)
        session = ctx.session(request)
        step.save_draft(session, engine=name, steps=choice.default_steps, guidance=choice.default_guidance)
        return {
            **tab.engine_view(ctx, name),
            tab.steps: choice.default_steps,
            tab.guidance: choice.default_guidance,
            **tab.length_view(ctx, session, seconds if session.length_chosen else None, policy, name),
        }

    length_inputs = [tab.seconds, tab.mask_policy]
    engine_outputs = [*tab.engine_outputs(), tab.steps, tab.guidance, *tab.length_outputs()]
    tab.engine.input(on_engine, [tab.engine, *length_inputs], engine_outputs, show_progress="hidden")

    @user_errors
    def on_select(engine: str | None, seconds: float, policy: str, request: gr.Request) -> Updates:
        session = ctx.session(request)
        return tab.length_view(ctx, session, seconds if session.length_chosen else None, policy, engine or None)

    tab_selected(on_select, [tab.engine, *length_inputs], tab.length_outputs(), show_progress="hidden")


def attach(ctx: StudioContext, tab: GenerateTab, jobs: JobRunner):
    """A handler that follows the session's project's running job, if any (after a reload or a reopen)."""

    def attached(request: gr.Request):
        session = ctx.session(request)
        job = jobs.running(session.project.project_id) if session.project is not None else None
        if job is None:
            yield gr.skip()
            return
        yield from follow(tab, job)

    return attached
