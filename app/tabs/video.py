"""Tab 1, the video: upload (with trim) or a sample; shows what the model will use of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
from gradio.components import Component

from app.sessions import Session
from app.steps import video as step
from app.steps.common import StudioError
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
        """What `view` sets."""
        return [self.info, self.first_frame, self.trim_start, self.trim_end]

    def shown(self, summary: step.VideoSummary) -> Updates:
        return {self.info: summary.info, self.first_frame: summary.first_frame}

    def view(self, session: Session, info: str | None) -> Updates:
        """The tab for a reopened project: its video's info and first frame, and the trim it was loaded with."""
        start, end = 0.0, None
        if session.project is not None:
            start, end = (session.project.meta().get("trim") or [0.0, None])[:2]
        return {
            self.info: info or "This project has no video yet: upload one or pick a sample.",
            self.first_frame: session.frames[0] if session.frames is not None else None,
            self.trim_start: start or 0,
            self.trim_end: end or 0,
        }


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
                trim_start = gr.Number(label="Trim start (s)", value=0, minimum=0, elem_id="trim-start")
                trim_end = gr.Number(label="Trim end (s, 0 = to the end)", value=0, minimum=0, elem_id="trim-end")
            apply_trim = gr.Button("Apply trim", elem_id="apply-trim")
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
    outputs = [tab.upload, tab.info, tab.first_frame, *loaded_outputs]

    @user_errors
    def on_upload(path, start, end, request: gr.Request) -> Updates:
        session = ctx.session(request)
        try:
            summary = step.load_video(ctx.engines, session, path, start or 0, end or None)
        except step.VideoTooLong as err:  # the upload stays, so the trim the message asks for can be applied
            gr.Warning(str(err), duration=None)
            return gr.skip()
        except StudioError as err:  # a refused file is cleared so that another can be dropped straight away
            gr.Warning(str(err), duration=None)
            return {tab.upload: None}
        for note in summary.warnings:  # e.g. a truncated file: the frames before the damage were kept
            gr.Warning(note, duration=None)
        return {**tab.shown(summary), **loaded(session)}

    @user_errors
    def on_sample(name, request: gr.Request) -> Updates:
        session = ctx.session(request)
        summary = step.load_sample(ctx.engines, session, name)
        return {**tab.shown(summary), **loaded(session)}

    tab.upload.upload(on_upload, [tab.upload, tab.trim_start, tab.trim_end], outputs)
    tab.apply_trim.click(on_upload, [tab.upload, tab.trim_start, tab.trim_end], outputs)
    tab.use_sample.click(on_sample, [tab.sample], outputs)
