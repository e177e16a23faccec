"""The studio reports where the tracker lost an object: the status after Propagate, the object table's 'frames tracked'
and the per-object state strip; Detect is off, with the reason, when no text detector is loaded."""

from __future__ import annotations

import numpy as np
import pytest

from app.sessions import SessionStore
from app.steps import masks as masks_step
from app.steps import video as video_step
from tests.test_app_adapters import H, T, W, make_engines


def _leaving(num_frames: int = T) -> np.ndarray:
    """A red square walking right out of the picture by frame ~10, over a striped grey background."""
    frames = np.zeros((num_frames, H, W, 3), np.uint8)
    frames[:] = (40 + 30 * (np.arange(W) // 8 % 2))[None, None, :, None]
    for t in range(num_frames):
        x = 20 + 12 * t
        frames[t, 30:70, x : min(x + 36, W)] = (220, 40, 40)
    return frames


@pytest.fixture
def tracked(tmp_path):
    from mvideo_core.video_io import write_video

    engines = make_engines(tmp_path)
    session = SessionStore().get("s1")
    video_step.load_video(engines, session, write_video(tmp_path / "leaving.mp4", _leaving(), 8.0))
    masks_step.click(engines, session, 0, 38, 50, True, None)
    masks_step.propagate(engines, session)
    return engines, session


def test_status_says_where_the_object_was_lost(tracked):
    engines, session = tracked
    states = masks_step.object_states(session)[0]["frames"]
    lost = [f["frame"] for f in states if f["state"] == "lost"]
    assert lost and lost[-1] == T - 1 and all(not session.masks.masks[0, t].any() for t in lost)
    status = masks_step.propagated_status(engines, session)
    assert f"object 1: lost on frames {lost[0]}-{T - 1}: add a click there" in status


def test_frames_tracked_counts_only_prompted_and_tracked_frames(tracked):
    _, session = tracked
    states = [f["state"] for f in masks_step.object_states(session)[0]["frames"]]
    assert masks_step.objects_table(session)[0][3] == states.count("prompted") + states.count("tracked") < T


def test_state_strip_colours_each_frame_by_its_state(tracked):
    _, session = tracked
    strip = masks_step.state_strip(session)
    states = [f["state"] for f in masks_step.object_states(session)[0]["frames"]]
    assert strip.shape == (masks_step.STRIP_ROW, 20 + masks_step.STRIP_WIDTH, 3)
    column = lambda t: 20 + int((t + 0.5) * masks_step.STRIP_WIDTH / T)  # noqa: E731
    for t in (0, 3, T - 1):
        assert tuple(strip[masks_step.STRIP_ROW // 2, column(t)]) == masks_step.STATE_COLOURS[states[t]]
    assert states[0] == "prompted" and states[-1] == "lost"


def test_states_come_back_when_the_project_is_reopened(tracked, tmp_path):
    from app.steps import project as project_step

    engines, session = tracked
    before = masks_step.object_states(session)
    again = SessionStore().get("s2")
    project_step.reopen_project(engines, again, session.project.project_id)
    assert masks_step.object_states(again) == before


def test_detect_is_off_with_the_reason_when_no_text_detector_is_loaded(tmp_path):
    import gradio as gr

    from app.tabs.common import StudioContext
    from app.tabs.masks import build_masks_tab

    engines = make_engines(tmp_path)
    engines.grounder, engines.grounder_status = None, "off: no Grounding DINO weights found (--grounding-dino)"
    with gr.Blocks():
        tab = build_masks_tab(StudioContext(engines, SessionStore()))
    assert tab.detect.interactive is False and tab.text_query.interactive is False
    assert "no Grounding DINO weights found (--grounding-dino)" in tab.text_query.info
    engines.grounder = object()
    with gr.Blocks():
        tab = build_masks_tab(StudioContext(engines, SessionStore()))
    assert tab.detect.interactive is not False and not tab.text_query.info
