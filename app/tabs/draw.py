"""Drawing on the edit preview (issue 25.3): a path to drag a layer along, clicked point by point at the times of the
frames shown, and boxes (two clicks each, at two or more times) that become a new layer's silhouette.

The drawing in progress lives in small `gr.State` lists (points and boxes as recipe JSON) until it is applied;
applying it is an ordinary recipe command (`editing.commands.set_path` / `add_box_layer`), with undo.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Protocol

import gradio as gr
from gradio.components import Component

from app.sessions import Session
from app.steps import edit as step
from app.steps.common import StudioError
from app.tabs.common import StudioContext, Updates, user_errors
from editing import commands
from editing.boxes import SHAPES
from editing.ops import OPS

PATH_POINT, BOX_CORNER = "path point", "box corner"
PATH = OPS["path"].param  # labels come from the op registry


@dataclass
class DrawControls:
    mode: gr.Radio
    smooth: gr.Checkbox
    orient: gr.Checkbox
    point_x: gr.Number
    point_y: gr.Number
    add_point: gr.Button
    apply_path: gr.Button
    remove_path: gr.Button
    shape: gr.Dropdown
    add_boxes: gr.Button
    clear: gr.Button
    drawing: gr.Markdown
    points: gr.State
    boxes: gr.State
    corner: gr.State

    def describe(self, points: list[dict], boxes: list[dict], corner: list[float] | None) -> str:
        """What has been drawn so far, in words."""
        lines = []
        if points:
            lines.append("Path: " + ", ".join(f"({p['x']:g}, {p['y']:g}) at {p['t']:g} s" for p in points))
        if boxes:
            lines.append("Boxes: " + ", ".join(f"{b['box']} at {b['t']:g} s" for b in boxes))
        if corner:
            lines.append(f"First corner at ({corner[0]:g}, {corner[1]:g}): click the opposite corner")
        return "\n\n".join(lines) or "Nothing drawn yet: click the preview."


class EditView(Protocol):
    """What the drawing needs of the edit tab (app.tabs.edit.EditTab)."""

    frame: gr.Slider
    preview: gr.Image
    layer: gr.Dropdown
    draw: DrawControls

    def outputs(self) -> list[Component]: ...

    def view(self, ctx: StudioContext, session: Session, frame_idx: Any = 0, layer: str | None = None) -> Updates: ...


def build_draw_controls() -> DrawControls:
    c: dict[str, Any] = {}
    with gr.Accordion("Draw: a path to follow, or boxes", open=True):
        gr.Markdown(
            "Move the preview slider to a frame and click the preview: each click adds a point at that frame's "
            "time. A path drags the chosen layer through its points; boxes (two corners each, at two or more "
            "times) make a new layer."
        )
        with gr.Row():
            c["mode"] = gr.Radio([PATH_POINT, BOX_CORNER], value=PATH_POINT, label="A click adds", elem_id="draw-mode")
            c["smooth"] = gr.Checkbox(value=True, label=PATH["smooth"].label, elem_id="draw-smooth")
            c["orient"] = gr.Checkbox(value=False, label=PATH["orient"].label)
        with gr.Row():
            c["point_x"] = gr.Number(label="x (px)", value=0, precision=1, elem_id="draw-x")
            c["point_y"] = gr.Number(label="y (px)", value=0, precision=1, elem_id="draw-y")
            c["add_point"] = gr.Button("Add at x, y", elem_id="draw-add-point")
        c["drawing"] = gr.Markdown("Nothing drawn yet: click the preview.", elem_id="draw-list")
        with gr.Row():
            c["apply_path"] = gr.Button("Drag layer along path", variant="primary", elem_id="apply-path")
            c["remove_path"] = gr.Button("Remove layer's path")
        with gr.Row():
            c["shape"] = gr.Dropdown(list(SHAPES), value=SHAPES[0], label="Box shape", elem_id="box-shape")
            c["add_boxes"] = gr.Button("Add boxes as a layer", elem_id="add-boxes")
            c["clear"] = gr.Button("Clear drawing", elem_id="draw-clear")
    c["points"], c["boxes"], c["corner"] = gr.State([]), gr.State([]), gr.State(None)
    return DrawControls(**{f.name: c[f.name] for f in fields(DrawControls)})


def wire_draw_controls(ctx: StudioContext, tab: EditView) -> None:
    draw, engines = tab.draw, ctx.engines
    state = [draw.points, draw.boxes, draw.corner]
    drawn = [tab.preview, *state, draw.drawing]

    def redraw(session: Session, idx: Any, points: list, boxes: list, corner: Any, smooth: bool) -> Updates:
        return {
            tab.preview: step.drawing_preview(engines, session, idx, points, boxes, corner, smooth),
            draw.points: points,
            draw.boxes: boxes,
            draw.corner: corner,
            draw.drawing: draw.describe(points, boxes, corner),
        }

    def add(session: Session, idx: Any, mode: str, points: list, boxes: list, corner: Any, smooth: bool, x, y):
        step.start_edit(engines, session)
        t = step.click_time(engines, session, idx)
        try:
            if mode == BOX_CORNER:
                boxes, corner = commands.add_box_corner(boxes or [], corner, t, x, y)
            else:
                points = commands.add_path_point(points or [], t, x, y)
        except ValueError as err:
            raise StudioError(str(err)) from err
        return redraw(session, idx, points, boxes, corner, smooth)

    inputs = [tab.frame, draw.mode, *state, draw.smooth]

    @user_errors
    def on_click(idx, mode, points, boxes, corner, smooth, evt: gr.SelectData, request: gr.Request) -> Updates:
        x, y = evt.index
        return add(ctx.session(request), idx, mode, points, boxes, corner, smooth, x, y)

    @user_errors
    def on_point(idx, mode, points, boxes, corner, smooth, x, y, request: gr.Request) -> Updates:
        return add(ctx.session(request), idx, mode, points, boxes, corner, smooth, x or 0, y or 0)

    tab.preview.select(on_click, inputs, drawn, show_progress="hidden")
    draw.add_point.click(on_point, [*inputs, draw.point_x, draw.point_y], drawn, show_progress="hidden")

    @user_errors
    def on_clear(idx, smooth, request: gr.Request) -> Updates:
        return redraw(ctx.session(request), idx, [], [], None, smooth)

    draw.clear.click(on_clear, [tab.frame, draw.smooth], drawn)

    def applied(session: Session, idx: Any, layer: Any, done: list) -> Updates:
        """The tab after a drawing was applied: the recipe's view, and the applied part of the drawing cleared."""
        return {**tab.view(ctx, session, idx, layer), **dict(zip(state, done)), draw.drawing: draw.describe(*done)}

    @user_errors
    def on_apply_path(idx, layer, points, boxes, corner, smooth, orient, request: gr.Request) -> Updates:
        session = ctx.session(request)
        if not points:
            raise StudioError("draw a path first: click the preview at two or more frames")
        step.set_path(engines, session, layer, points, smooth, orient)
        return applied(session, idx, layer, [points, boxes, corner])

    @user_errors
    def on_remove_path(idx, layer, request: gr.Request) -> Updates:
        session = ctx.session(request)
        step.set_path(engines, session, layer, [], False, False)
        return tab.view(ctx, session, idx, layer)

    @user_errors
    def on_add_boxes(idx, layer, points, boxes, corner, shape, request: gr.Request) -> Updates:
        session = ctx.session(request)
        if not boxes:
            raise StudioError("draw a box first: choose 'box corner' and click two opposite corners")
        step.add_box_layer(engines, session, boxes, shape)
        return applied(session, idx, layer, [points, [], None])

    outputs = [*tab.outputs(), *state, draw.drawing]
    draw.apply_path.click(on_apply_path, [tab.frame, tab.layer, *state, draw.smooth, draw.orient], outputs)
    draw.remove_path.click(on_remove_path, [tab.frame, tab.layer], tab.outputs())
    draw.add_boxes.click(on_add_boxes, [tab.frame, tab.layer, *state, draw.shape], outputs)
