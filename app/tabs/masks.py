"""Tab 2, the masks: detect by text or click on a frame, refine, propagate, and import/export mask files."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from gradio.components import Component

from app.engines import gpu_function
from app.sessions import Session
from app.steps import mask_files
from app.steps import masks as step
from app.tabs.common import StudioContext, Updates, user_errors

NEW_OBJECT = "new"


@dataclass
class MasksTab:
    frame_slider: gr.Slider
    frame_img: gr.Image
    strip: gr.Image
    text_query: gr.Textbox
    detect: gr.Button
    candidates: gr.CheckboxGroup
    keep: gr.Button
    click_kind: gr.Radio
    click_obj: gr.Dropdown
    point_x: gr.Number
    point_y: gr.Number
    add_point: gr.Button
    objects: gr.Dataframe
    new_name: gr.Textbox
    rename: gr.Button
    delete: gr.Button
    propagate: gr.Button
    stop: gr.Button
    status: gr.Markdown
    overlay: gr.Video
    mask_import: gr.File
    export_fmt: gr.Dropdown
    export: gr.Button
    export_file: gr.File

    def outputs(self) -> list[Component]:
        """What `view` sets."""
        return [
            self.frame_slider,
            self.frame_img,
            self.strip,
            self.objects,
            self.overlay,
            self.candidates,
            self.click_obj,
            self.status,
        ]

    def view(self, ctx: StudioContext, session: Session) -> Updates:
        """The whole tab as the session holds it (after a new video or a reopened project)."""
        has_video = session.frames is not None
        n = len(session.frames) if session.frames is not None else 2
        return {
            self.frame_slider: gr.Slider(0, max(1, n - 1), value=0, step=1, label="Frame"),
            self.frame_img: step.preview_frame(ctx.engines, session, 0) if has_video else None,
            self.strip: step.state_strip(session),
            self.objects: step.objects_table(session),
            self.overlay: step.overlay_video(session, reuse=True) if session.masks is not None else None,
            self.candidates: gr.CheckboxGroup([], value=[]),
            self.click_obj: self.object_choice(session),
            self.status: "",
        }

    def object_choice(self, session: Session, value: str = NEW_OBJECT) -> gr.Dropdown:
        return gr.Dropdown(step.object_choices(session), value=value)


def build_masks_tab(ctx: StudioContext) -> MasksTab:
    with gr.Row():
        with gr.Column(scale=3):
            frame_slider = gr.Slider(0, 1, value=0, step=1, label="Frame", elem_id="frame-slider")
            frame_img = gr.Image(
                label="Click to add points to the chosen object",
                interactive=False,
                format="jpeg",
                elem_id="mask-frame",
            )
            strip = gr.Image(
                label="Frame states (per object): blue prompted, green tracked, amber uncertain, red lost",
                interactive=False,
                show_label=True,
                height=80,
                elem_id="state-strip",
            )
        with gr.Column(scale=2):
            detector = ctx.engines.grounder is not None
            with gr.Row():
                text_query = gr.Textbox(
                    label="What to track",
                    placeholder="person . dog" if detector else "text detection is off: click on the object",
                    info=None if detector else f"Text detection is off: {ctx.engines.grounder_status}",
                    interactive=detector,
                    scale=3,
                    elem_id="track-text",
                )
                detect = gr.Button("Detect", scale=1, interactive=detector, elem_id="detect")
            candidates = gr.CheckboxGroup([], label="Candidate boxes: pick which to keep", elem_id="candidates")
            keep = gr.Button("Keep picked boxes", elem_id="keep-boxes")
            with gr.Row():
                click_kind = gr.Radio(["+ include", "− exclude"], value="+ include", label="Click adds")
                click_obj = gr.Dropdown(
                    [("new object", NEW_OBJECT)], value=NEW_OBJECT, label="Object", elem_id="click-object"
                )
            with gr.Row():  # the keyboard way to place a point (x, y in frame pixels)
                point_x = gr.Number(label="Point x (px)", value=0, minimum=0, precision=1)
                point_y = gr.Number(label="Point y (px)", value=0, minimum=0, precision=1)
                add_point = gr.Button("Add point", elem_id="add-point")
            objects = gr.Dataframe(
                headers=["id", "name", "colour", "frames tracked"],
                datatype=["number", "str", "str", "number"],
                interactive=False,
                label="Objects",
                elem_id="objects",
            )
            with gr.Row():
                new_name = gr.Textbox(label="Rename chosen object", scale=3)
                rename = gr.Button("Rename", scale=1)
                delete = gr.Button("Delete", scale=1, variant="stop", elem_id="delete")
            with gr.Row():
                propagate = gr.Button("Propagate", variant="primary", elem_id="propagate")
                stop = gr.Button("Stop", elem_id="stop-propagate")
            status = gr.Markdown("", elem_id="mask-status")
    with gr.Row():
        overlay = gr.Video(label="Overlay preview", interactive=False, elem_id="overlay-video")
        with gr.Column():
            mask_import = gr.File(
                label="Import masks (.zip, .npz, .mp4, .json)",
                file_types=[".zip", ".npz", ".mp4", ".json"],
                elem_id="mask-import",
            )
            export_fmt = gr.Dropdown(list(mask_files.MASK_FORMATS), value="NumPy npz", label="Export format")
            export = gr.Button("Export masks")
            export_file = gr.File(label="Exported masks", interactive=False)
    return MasksTab(
        frame_slider, frame_img, strip, text_query, detect, candidates, keep, click_kind, click_obj, point_x, point_y,
        add_point, objects, new_name, rename, delete, propagate, stop, status, overlay, mask_import, export_fmt,
        export, export_file,
    )  # fmt: skip


def _object_id(value: str | None) -> int | None:
    return None if value in (None, "", NEW_OBJECT) else int(value)


def wire_masks_tab(ctx: StudioContext, tab: MasksTab) -> None:
    engines = ctx.engines
    refined = [tab.frame_img, tab.strip, tab.objects, tab.click_obj]

    @user_errors
    def on_frame(idx, request: gr.Request):
        return step.preview_frame(engines, ctx.session(request), idx)

    tab.frame_slider.input(
        on_frame, [tab.frame_slider], [tab.frame_img], show_progress="hidden", trigger_mode="always_last"
    )

    def clicked(session: Session, idx, kind: str, obj, x: float, y: float) -> Updates:
        img, obj_id = step.click(engines, session, idx, x, y, kind.startswith("+"), _object_id(obj))
        return {
            tab.frame_img: img,
            tab.strip: step.state_strip(session),
            tab.objects: step.objects_table(session),
            tab.click_obj: tab.object_choice(session, str(obj_id)),
        }

    @user_errors
    def on_click(idx, kind, obj, evt: gr.SelectData, request: gr.Request) -> Updates:
        x, y = evt.index
        return clicked(ctx.session(request), idx, kind, obj, x, y)

    tab.frame_img.select(gpu_function()(on_click), [tab.frame_slider, tab.click_kind, tab.click_obj], refined)

    @user_errors
    def on_point(idx, kind, obj, x, y, request: gr.Request) -> Updates:
        return clicked(ctx.session(request), idx, kind, obj, x or 0, y or 0)

    tab.add_point.click(
        gpu_function()(on_point), [tab.frame_slider, tab.click_kind, tab.click_obj, tab.point_x, tab.point_y], refined
    )

    @user_errors
    def on_detect(text, idx, request: gr.Request) -> Updates:
        img, choices = step.detect(engines, ctx.session(request), text, idx)
        return {tab.frame_img: img, tab.candidates: gr.CheckboxGroup(choices, value=choices[:1])}

    detect = gpu_function()(on_detect)
    tab.detect.click(detect, [tab.text_query, tab.frame_slider], [tab.frame_img, tab.candidates])
    tab.text_query.submit(detect, [tab.text_query, tab.frame_slider], [tab.frame_img, tab.candidates])

    @user_errors
    def on_keep(chosen, request: gr.Request) -> Updates:
        session = ctx.session(request)
        notes: list[str] = []
        img = step.add_candidates(engines, session, chosen, notes)
        return {
            tab.frame_img: img,
            tab.objects: step.objects_table(session),
            tab.click_obj: gr.Dropdown(step.object_choices(session)),
            tab.candidates: gr.CheckboxGroup([], value=[]),
            tab.status: " ".join(notes) + " Propagate to track the change.",
        }

    tab.keep.click(gpu_function()(on_keep), [tab.candidates], [*refined, tab.candidates, tab.status])

    @user_errors
    def on_propagate(idx, request: gr.Request, progress=gr.Progress()) -> Updates:
        session = ctx.session(request)

        def report(done: int, total: int, desc: str) -> None:
            progress((done, total), desc=desc, unit="frames")

        try:
            path, status = step.propagate(engines, session, report), step.propagated_status(engines, session)
        except step.PropagationStopped as err:  # the finished frames are kept: show them and say how to go on
            path = step.overlay_video(session) if session.masks is not None else None
            status = f"{str(err)[0].upper()}{str(err)[1:]}"
        return {
            tab.overlay: path,
            tab.frame_img: step.preview_frame(engines, session, idx),
            tab.strip: step.state_strip(session),
            tab.objects: step.objects_table(session),
            tab.status: status,
        }

    tab.propagate.click(
        gpu_function()(on_propagate),
        [tab.frame_slider],
        [tab.overlay, tab.frame_img, tab.strip, tab.objects, tab.status],
        concurrency_id="gpu",  # one GPU worker shared by propagation and generation
    )

    def on_stop(request: gr.Request) -> Updates:
        session = ctx.session(request)
        if not session.propagating:
            return {tab.status: "Nothing is propagating."}
        session.cancel.set()
        return {tab.status: "Stopping after the current frame…"}

    # The flag stops the tracker between frames and Propagate answers with what it kept (cancelling the event
    # instead would drop that answer).
    tab.stop.click(on_stop, None, [tab.status], queue=False)

    @user_errors
    def on_delete(obj, idx, request: gr.Request) -> Updates:
        session = ctx.session(request)
        step.delete_object(engines, session, obj)
        return {
            tab.frame_img: step.preview_frame(engines, session, idx),
            tab.strip: step.state_strip(session),
            tab.objects: step.objects_table(session),
            tab.click_obj: tab.object_choice(session),
        }

    tab.delete.click(on_delete, [tab.click_obj, tab.frame_slider], refined)

    @user_errors
    def on_rename(obj, name, idx, request: gr.Request) -> Updates:
        session = ctx.session(request)
        step.rename_object(session, obj, name)
        return {
            tab.frame_img: step.preview_frame(engines, session, idx),
            tab.objects: step.objects_table(session),
            tab.click_obj: tab.object_choice(session, obj),
        }

    tab.rename.click(on_rename, [tab.click_obj, tab.new_name, tab.frame_slider], refined)

    @user_errors
    def on_export(fmt, request: gr.Request) -> Updates:
        return {tab.export_file: mask_files.export_masks(ctx.session(request), fmt)}

    tab.export.click(on_export, [tab.export_fmt], [tab.export_file])

    @user_errors(clear=[tab.mask_import])
    def on_import(path, idx, request: gr.Request) -> Updates:
        session = ctx.session(request)
        video = mask_files.import_masks(engines, session, path)
        return {
            tab.overlay: video,
            tab.frame_img: step.preview_frame(engines, session, idx),
            tab.objects: step.objects_table(session),
            tab.status: "Masks imported.",
        }

    tab.mask_import.upload(
        on_import,
        [tab.mask_import, tab.frame_slider],
        [tab.overlay, tab.frame_img, tab.objects, tab.status, tab.mask_import],
    )

    def on_row(evt: gr.SelectData, request: gr.Request) -> Updates:
        """A row of the object table chooses that object (for clicks, rename and delete)."""
        session = ctx.session(request)
        rows = step.objects_table(session)
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not isinstance(row, int) or not 0 <= row < len(rows):
            return gr.skip()
        obj_id, name = rows[row][0], rows[row][1]
        return {tab.click_obj: tab.object_choice(session, str(obj_id)), tab.new_name: name}

    tab.objects.select(on_row, None, [tab.click_obj, tab.new_name], show_progress="hidden")
