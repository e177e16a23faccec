"""The studio's drawing on the edit preview (issue 25.3): clicked path points and boxes become recipe edits."""

from __future__ import annotations

import numpy as np
import pytest

from app.cli import build_parser
from app.engines import Engines, settings_from_args
from app.sessions import SessionStore
from app.steps import edit as edit_step
from app.steps import video as video_step
from app.steps.common import StudioError
from editing import commands
from editing.recipe import RecipeError
from mvideo_core.masks import MaskSet

H, W, T = 48, 64, 9


@pytest.fixture
def session(tmp_path):
    """A session with a 9-frame video and one extracted object (a 6x8 block standing still)."""
    from mvideo_core.video_io import write_video

    args = build_parser().parse_args(["--tiny-random", "--projects-dir", str(tmp_path / "projects")])
    settings = settings_from_args(args)
    settings.work_size = (H, W)
    engines = Engines(settings)
    frames = np.full((T, H, W, 3), 90, np.uint8)
    session = SessionStore().get("s")
    video_step.load_video(engines, session, write_video(tmp_path / "v.mp4", frames, 8.0))
    masks = np.zeros((1, T, H, W), dtype=bool)
    masks[:, :, 10:16, 10:18] = True
    session.masks = MaskSet(masks, 8.0, names=["block"])
    edit_step.start_edit(engines, session, reset=True)
    return engines, session


def centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return xs.mean(), ys.mean()


def test_clicked_points_drag_the_layer_along_the_path_and_undo_removes_it(session):
    engines, s = session
    points = commands.add_path_point([], edit_step.click_time(engines, s, 0), 12, 30)
    points = commands.add_path_point(points, edit_step.click_time(engines, s, 8), 50, 20)
    assert points == [{"t": 0.0, "x": 12.0, "y": 30.0}, {"t": 1.0, "x": 50.0, "y": 20.0}]
    recipe = edit_step.set_path(engines, s, "1", points, smooth=True, orient=False)
    assert recipe["layers"][0]["ops"] == [
        {"op": "path", "points": points, "anchor": "centroid", "smooth": True, "orient": False}
    ]
    masks = edit_step.edited_masks(engines, s).masks[0]
    assert np.allclose(centroid(masks[0]), (12, 30), atol=0.5) and np.allclose(centroid(masks[8]), (50, 20), atol=0.5)
    assert "path (2 points, smooth)" in edit_step.recipe_summary(recipe)
    assert edit_step.undo(engines, s)["layers"][0]["ops"] == []
    with pytest.raises(StudioError, match="outside the edit's"):
        edit_step.set_path(engines, s, "1", [{"t": 9.0, "x": 1, "y": 1}], True, False)


def test_the_preview_shows_applied_paths_and_the_drawing_in_progress(session):
    engines, s = session
    plain = edit_step.edit_preview_frame(engines, s, 4)
    points = [{"t": 0.0, "x": 5.0, "y": 40.0}, {"t": 1.0, "x": 60.0, "y": 40.0}]
    drawing = edit_step.drawing_preview(engines, s, 4, points, [{"t": 0.0, "box": [30, 2, 60, 12]}], None)
    assert (drawing[40, 20:50] != plain[40, 20:50]).any(axis=1).all()  # the drawn line across row 40
    assert (drawing[2, 30:60] != plain[2, 30:60]).any()  # the box's top edge
    edit_step.set_path(engines, s, "1", points, False, False)
    applied = edit_step.edit_preview_frame(engines, s, 4)
    assert (applied[40, 20:50] != plain[40, 20:50]).any(axis=1).all()  # the applied path stays on the preview


def test_two_clicks_make_a_box_and_boxes_at_two_times_make_a_layer(session):
    engines, s = session
    boxes, corner = commands.add_box_corner([], None, 0.0, 40, 30)
    assert boxes == [] and corner == [40.0, 30.0]
    boxes, corner = commands.add_box_corner(boxes, corner, 0.0, 30, 44)  # any two opposite corners
    assert boxes == [{"t": 0.0, "box": [30.0, 30.0, 41.0, 45.0]}] and corner is None
    boxes, _ = commands.add_box_corner(boxes, [2.0, 2.0], 1.0, 12, 12)
    with pytest.raises(RecipeError, match="at least a pixel apart"):
        commands.add_box_corner(boxes, [5.0, 5.0], 1.0, 5.2, 9)
    recipe = edit_step.add_box_layer(engines, s, boxes, "rounded")
    assert [lay.get("name") for lay in recipe["layers"]] == ["block", "boxes 1"]
    masks = edit_step.edited_masks(engines, s)
    ys, xs = np.nonzero(masks.masks[1, 0])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (30, 44, 30, 40)
    ys, xs = np.nonzero(masks.masks[1, 8])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (2, 12, 2, 12)
    with pytest.raises(StudioError, match="draw at least one box"):
        edit_step.add_box_layer(engines, s, [], "ellipse")
