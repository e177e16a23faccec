"""Tab 3, the edit: layers, keyframed zoom/pan/rotate, terrain, timing, undo/redo, live preview, recipe JSON."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import gradio as gr
from gradio.components import Component

from app.sessions import Session
from app.steps import edit as step
from app.steps import layers
from app.steps.common import StudioError, plural, to_json
from app.steps.video import list_samples
from app.tabs.common import StudioContext, Updates, user_errors
from app.tabs.draw import DrawControls, build_draw_controls, wire_draw_controls
from editing.ops import ANCHOR, KEYFRAME_PARAMS, OPS

START_HINT = "Press **Start editing** once your masks are ready."
KEY = {p.name: p for p in KEYFRAME_PARAMS}  # labels and choices come from the op registry
TERRAIN = OPS["terrain"].param


@dataclass
class EditTab:
    status: gr.Markdown
    start: gr.Button
    undo: gr.Button
    redo: gr.Button
    frame: gr.Slider
    preview: gr.Image
    render_video: gr.Button
    video: gr.Video
    layer: gr.Dropdown
    key_t: gr.Number
    key_scale: gr.Number
    key_rotate: gr.Number
    key_x: gr.Number
    key_y: gr.Number
    key_ease: gr.Dropdown
    key_anchor: gr.Dropdown
    add_key: gr.Button
    clear_keys: gr.Button
    terrain: gr.Dropdown
    rise: gr.Slider
    tilt: gr.Slider
    apply_terrain: gr.Button
    offset: gr.Number
    speed: gr.Number
    retime: gr.Number
    apply_time: gr.Button
    length: gr.Number
    apply_length: gr.Button
    layer_file: gr.File
    layer_project: gr.Textbox
    add_project_layer: gr.Button
    layer_sample: gr.Dropdown
    add_sample_layer: gr.Button
    recipe_json: gr.Code
    recipe_download: gr.Button
    recipe_file: gr.File
    recipe_upload: gr.File
    draw: DrawControls

    def outputs(self) -> list[Component]:
        """What `view` sets."""
        return [self.preview, self.frame, self.layer, self.recipe_json, self.status]

    def view(self, ctx: StudioContext, session: Session, frame_idx: Any = 0, layer: str | None = None) -> Updates:
        """The tab for the session's current recipe (preview frame, layers, JSON and a summary of the edit)."""
        recipe = session.undo.current if session.undo is not None else None
        if recipe is None or session.undo is None:
            return {
                self.preview: None,
                self.frame: gr.Slider(0, 1, value=0, step=1, label="Preview frame"),
                self.layer: gr.Dropdown([], value=None),
                self.recipe_json: "",
                self.status: START_HINT,
            }
        try:
            masks = step.edited_masks(ctx.engines, session)
        except StudioError as err:  # e.g. a new video whose objects the edit does not have: say so, keep the tab
            return {self.preview: None, self.status: f"{err}. Press **Start editing** to edit the new masks."}
        idx = min(int(frame_idx or 0), masks.num_frames - 1)
        choices = step.layer_choices(session)
        values = [c[1] for c in choices]
        layer = layer if layer in values else (values[0] if values else None)
        undo = session.undo
        return {
            self.preview: step.edit_preview_frame(ctx.engines, session, idx),
            self.frame: gr.Slider(0, max(1, masks.num_frames - 1), value=idx, step=1, label="Preview frame"),
            self.layer: gr.Dropdown(choices, value=layer),
            self.recipe_json: to_json(recipe),
            self.status: f"{plural(len(recipe['layers']), 'layer')}, {step.recipe_duration(recipe):.2f} s; "
            f"undo: {'yes' if undo.can_undo else 'no'}, redo: {'yes' if undo.can_redo else 'no'}\n\n"
            + step.recipe_summary(recipe)
            + "".join(f"\n\n**Warning:** {w}" for w in masks.meta.get("warnings", [])),
        }


def build_edit_tab(ctx: StudioContext) -> EditTab:
    c: dict[str, Any] = {}
    with gr.Row():
        with gr.Column(scale=3):
            c["status"] = gr.Markdown(START_HINT, elem_id="edit-status")
            with gr.Row():
                c["start"] = gr.Button("Start editing from the masks", variant="primary", elem_id="edit-start")
                c["undo"] = gr.Button("Undo", elem_id="edit-undo")
                c["redo"] = gr.Button("Redo", elem_id="edit-redo")
            c["frame"] = gr.Slider(0, 1, value=0, step=1, label="Preview frame", elem_id="edit-frame")
            c["preview"] = gr.Image(
                label="Edited motion (live preview)", interactive=False, format="jpeg", elem_id="edit-preview"
            )
            c["render_video"] = gr.Button("Render preview video")
            c["video"] = gr.Video(label="Edited motion", interactive=False)
        with gr.Column(scale=2):
            c["layer"] = gr.Dropdown([], label="Layer", elem_id="edit-layer")
            with gr.Accordion("Camera: keyframed zoom / pan / rotate", open=True):
                with gr.Row():
                    c["key_t"] = gr.Number(label=KEY["t"].label, value=0.0, minimum=0, elem_id="key-t")
                    c["key_scale"] = gr.Number(label=KEY["scale"].label, value=1.0, minimum=0.05, elem_id="key-scale")
                    c["key_rotate"] = gr.Number(label=KEY["rotate"].label, value=0.0)
                with gr.Row():
                    c["key_x"] = gr.Number(label=KEY["x"].label, value=0.0)
                    c["key_y"] = gr.Number(label=KEY["y"].label, value=0.0)
                with gr.Row():
                    c["key_ease"] = gr.Dropdown(
                        list(KEY["ease"].choices), value="ease_in_out", label=KEY["ease"].label
                    )
                    c["key_anchor"] = gr.Dropdown(list(ANCHOR.choices), value="bottom", label=ANCHOR.label)
                with gr.Row():
                    c["add_key"] = gr.Button("Add keyframe", elem_id="add-keyframe")
                    c["clear_keys"] = gr.Button("Clear keyframes")
            with gr.Accordion("Terrain", open=True):
                with gr.Row():
                    c["terrain"] = gr.Dropdown(
                        list(step.TERRAINS), value="uphill", label=TERRAIN["profile"].label, elem_id="terrain"
                    )
                    c["rise"] = gr.Slider(-1, 1, value=0.25, step=TERRAIN["rise"].step, label=TERRAIN["rise"].label)
                    c["tilt"] = gr.Slider(0, 1, value=0.0, step=TERRAIN["tilt"].step, label=TERRAIN["tilt"].label)
                c["apply_terrain"] = gr.Button("Apply terrain", elem_id="apply-terrain")
            c["draw"] = build_draw_controls()
            with gr.Accordion("Time", open=False, elem_id="edit-time"):
                with gr.Row():
                    c["offset"] = gr.Number(label="Starts at (s)", value=0.0)
                    c["speed"] = gr.Number(label="Speed (x)", value=1.0, minimum=0.05)
                    c["retime"] = gr.Number(label="Retime to (s, 0 = off)", value=0.0, minimum=0)
                c["apply_time"] = gr.Button("Apply timing")
                with gr.Row():
                    c["length"] = gr.Number(label="Edit length (s)", value=4.0, minimum=0.5, elem_id="edit-length")
                    c["apply_length"] = gr.Button("Set length", elem_id="set-length")
            with gr.Accordion("More layers", open=False):
                c["layer_file"] = gr.File(
                    label="Add a layer from a mask file", file_types=[".zip", ".npz", ".mp4", ".json"]
                )
                samples = list_samples()
                with gr.Row():
                    c["layer_project"] = gr.Textbox(
                        label="…or the masks of another video: its project id", placeholder="20261125-190312-…"
                    )
                    c["add_project_layer"] = gr.Button("Add that video's subjects as a layer")
                with gr.Row():
                    c["layer_sample"] = gr.Dropdown(samples, value=samples[0] if samples else None, label="Sample")
                    c["add_sample_layer"] = gr.Button("Add sample's subject as a layer")
            with gr.Accordion("Recipe JSON", open=False):
                c["recipe_json"] = gr.Code(language="json", label="Recipe", interactive=False)
                with gr.Row():
                    c["recipe_download"] = gr.Button("Download recipe")
                    c["recipe_file"] = gr.File(label="recipe.json", interactive=False)
                c["recipe_upload"] = gr.File(label="Load a recipe (.json)", file_types=[".json"])
    return EditTab(**{f.name: c[f.name] for f in fields(EditTab)})


def wire_edit_tab(ctx: StudioContext, tab: EditTab) -> None:
    engines = ctx.engines

    def on(event: Callable, fn: Callable[..., step.Recipe], names: list[str]) -> None:
        """Wire `event` to `fn(session, layer, *values of names)`; the recipe it returns refreshes the tab."""
        inputs = [getattr(tab, n) for n in names]
        files = [c for c in inputs if isinstance(c, gr.File)]  # a refused file is cleared so another can be dropped

        @user_errors(clear=files)
        def run(data: dict, request: gr.Request) -> Updates:
            session = ctx.session(request)
            fn(session, data[tab.layer], *[data[c] for c in inputs])
            return tab.view(ctx, session, data[tab.frame], data[tab.layer])

        event(run, {*inputs, tab.frame, tab.layer}, [*tab.outputs(), *files])

    on(tab.start.click, lambda session, layer: step.start_edit(engines, session, reset=True), [])
    on(tab.undo.click, lambda session, layer: step.undo(engines, session), [])
    on(tab.redo.click, lambda session, layer: step.redo(engines, session), [])
    key_inputs = ["key_t", "key_scale", "key_x", "key_y", "key_rotate", "key_ease", "key_anchor"]
    on(tab.add_key.click, lambda session, layer, *v: step.add_keyframe(engines, session, layer, *v), key_inputs)
    on(tab.clear_keys.click, lambda session, layer: step.clear_keyframes(engines, session, layer), [])
    on(
        tab.apply_terrain.click,
        lambda session, layer, *v: step.set_terrain(engines, session, layer, *v),
        ["terrain", "rise", "tilt"],
    )
    on(
        tab.apply_time.click,
        lambda session, layer, *v: step.set_timing(engines, session, layer, *v),
        ["offset", "speed", "retime"],
    )
    on(tab.apply_length.click, lambda session, layer, sec: step.set_length(engines, session, sec), ["length"])
    on(
        tab.layer_file.upload,
        lambda session, layer, p: layers.add_layer_from_file(engines, session, p),
        ["layer_file"],
    )
    on(
        tab.add_project_layer.click,
        lambda session, layer, pid: layers.add_layer_from_project(engines, session, pid),
        ["layer_project"],
    )
    on(
        tab.add_sample_layer.click,
        lambda session, layer, name: layers.add_layer_from_sample(engines, session, name),
        ["layer_sample"],
    )
    on(
        tab.recipe_upload.upload,
        lambda session, layer, p: step.load_recipe_file(engines, session, p),
        ["recipe_upload"],
    )

    @user_errors
    def on_frame(idx, request: gr.Request):
        return step.edit_preview_frame(engines, ctx.session(request), idx)

    tab.frame.input(on_frame, [tab.frame], [tab.preview], show_progress="hidden", trigger_mode="always_last")

    @user_errors
    def on_video(request: gr.Request) -> Updates:
        return {tab.video: step.edit_preview_video(engines, ctx.session(request))}

    tab.render_video.click(on_video, None, [tab.video])

    @user_errors
    def on_download(request: gr.Request) -> Updates:
        return {tab.recipe_file: step.recipe_file(engines, ctx.session(request))}

    tab.recipe_download.click(on_download, None, [tab.recipe_file])
    wire_draw_controls(ctx, tab)
