"""Tab 4, generation: prompt and settings, a player fed clip by clip, the gallery of clips, the final files."""

from __future__ import annotations

import os
from dataclasses import dataclass

import gradio as gr

from app.engines import gpu_function
from app.steps import generate as step
from app.tabs.common import StudioContext, Updates, user_errors

# On a ZeroGPU Space each Generate call holds a GPU for at most this long (a 16 s video on an A100-class GPU).
GPU_SECONDS = int(os.environ.get("MVIDEO_GPU_SECONDS", "600"))


@dataclass
class GenerateTab:
    status: gr.Markdown
    prompt: gr.Textbox
    negative: gr.Textbox
    seconds: gr.Slider
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


def build_generate_tab(ctx: StudioContext) -> GenerateTab:
    engines = ctx.engines
    s = engines.settings
    ready = engines.generator is not None
    status = gr.Markdown(
        f"**Generator:** {engines.generation_status}" if ready else step.generation_explanation(engines),
        elem_id="gen-status",
    )
    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(
                label="Prompt", lines=3, placeholder="an astronaut doing a backflip on the moon", elem_id="gen-prompt"
            )
            negative = gr.Textbox(label="Negative prompt", lines=1, placeholder="blurry, distorted")
            clip = int(s.clip_seconds)
            seconds = gr.Slider(clip, 8 * clip, value=2 * clip, step=clip, label="Length (s, whole clips)")
            with gr.Row():
                steps = gr.Slider(1, 100, value=s.default_steps, step=1, label="Steps")
                guidance = gr.Slider(0, 15, value=s.default_guidance, step=0.5, label="Guidance")
                mask_guidance = gr.Slider(
                    1, 5, value=1.0, step=0.5, label="Mask guidance (1 = off)", elem_id="gen-mask-guidance"
                )
                seed = gr.Number(label="Seed", value=0, precision=0)
            start_image = gr.Image(label="Start image (optional)", type="numpy", sources=["upload"])
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
        status, prompt, negative, seconds, steps, guidance, mask_guidance, seed, start_image, go, stop, progress,
        stream, gallery, files,
    )  # fmt: skip


def wire_generate_tab(ctx: StudioContext, tab: GenerateTab) -> None:
    engines = ctx.engines
    form = [tab.prompt, tab.negative, tab.seconds, tab.steps, tab.guidance, tab.seed, tab.start_image]
    form.append(tab.mask_guidance)

    @user_errors
    def run(prompt, negative, seconds, steps, guidance, seed, start_image, mask_guidance, request: gr.Request, progress=gr.Progress(track_tqdm=True)):  # fmt: skip
        session = ctx.session(request)
        request_form = step.check_generation(
            engines, prompt, negative, seconds, steps, guidance, seed, start_image, mask_guidance
        )
        for update in step.generate(engines, session, request_form):
            files = [f for f in (update.final, update.record) if f]
            yield {
                tab.progress: update.status,
                tab.stream: update.clip,
                tab.gallery: list(update.clips),
                tab.files: files or None,
            }

    event = tab.go.click(
        gpu_function(duration=GPU_SECONDS)(run),
        form,
        [tab.progress, tab.stream, tab.gallery, tab.files],
        concurrency_id="gpu",
    )

    def stop(request: gr.Request) -> Updates:
        ctx.session(request).cancel.set()
        return {tab.progress: "Stopping after the current step; finished clips are kept in the project."}

    tab.stop.click(stop, None, [tab.progress], cancels=[event], queue=False)
