"""Tab 1, the video: upload (with trim) or a sample; shows what the model will use of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
from gradio.components import Component

from app.sessions import Session
from app.steps import video as step
from app.tabs.common import StudioContext, Updates, user_errors

EMPTY_INFO = "Upload a video or pick a sample."


@dataclass
class VideoTab:
    upload: gr.File
    trim_start: gr.Number
    trim_end: gr.Number
    apply_trim: gr.Button
    sample: gr.Dropdown
    use_sample: gr.Button
    info: gr.Markdown
    first_frame: gr.Image

    def outputs(self) -> list[Component]:
        return [self.info, self.first_frame]

    def shown(self, summary: step.VideoSummary) -> Updates:
        return {self.info: summary.info, self.first_frame: summary.first_frame}


def build_video_tab(ctx: StudioContext) -> VideoTab:
    s = ctx.engines.settings
    with gr.Row():
        with gr.Column():
            upload = gr.File(
                label=f"Upload a video (mp4, mov, webm, gif; up to {s.max_upload_mb:g} MB, {s.max_seconds:g} s)",
                file_types=list(step.VIDEO_SUFFIXES),
                type="filepath",
                elem_id="upload",
            )
            with gr.Row():
                trim_start = gr.Number(label="Trim start (s)", value=0, minimum=0)
                trim_end = gr.Number(label="Trim end (s, 0 = to the end)", value=0, minimum=0)
            apply_trim = gr.Button("Apply trim")
            samples = step.list_samples()
            with gr.Row():
                sample = gr.Dropdown(samples, value=samples[0] if samples else None, label="…or try a sample")
                use_sample = gr.Button("Use sample", elem_id="use-sample")
        with gr.Column():
            info = gr.Markdown(EMPTY_INFO, elem_id="video-info")
            first_frame = gr.Image(label="First frame (as the model sees it)", interactive=False)
    return VideoTab(upload, trim_start, trim_end, apply_trim, sample, use_sample, info, first_frame)


def wire_video_tab(
    ctx: StudioContext, tab: VideoTab, loaded: Callable[[Session], Updates], loaded_outputs: list[Component]
) -> None:
    """A new video refreshes this tab and whatever `loaded(session)` returns for the other parts of the page."""
    outputs = [*tab.outputs(), *loaded_outputs]

    @user_errors
    def on_upload(path, start, end, request: gr.Request) -> Updates:
        session = ctx.session(request)
        summary = step.load_video(ctx.engines, session, path, start or 0, end or None)
        return {**tab.shown(summary), **loaded(session)}

    @user_errors
    def on_sample(name, request: gr.Request) -> Updates:
        session = ctx.session(request)
        summary = step.load_sample(ctx.engines, session, name)
        return {**tab.shown(summary), **loaded(session)}

    # A refused file is cleared so that the user can drop another one straight away.
    tab.upload.upload(on_upload, [tab.upload, tab.trim_start, tab.trim_end], outputs).failure(
        lambda: None, None, [tab.upload]
    )
    tab.apply_trim.click(on_upload, [tab.upload, tab.trim_start, tab.trim_end], outputs)
    tab.use_sample.click(on_sample, [tab.sample], outputs)
