"""The studio's adapter functions, without a browser: video step, masks step, edit step, projects and sessions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli import build_parser
from app.engines import Engines, build_tracker, settings_from_args
from app.projects import ProjectError, create_project, open_project
from app.sessions import SessionStore
from app.steps import edit as edit_step
from app.steps import masks as masks_step
from app.steps import project as project_step
from app.steps import video as video_step
from app.steps.common import StudioError

H, W, T = 96, 144, 16


def _frames(num_frames: int = T, size: tuple[int, int] = (H, W)) -> np.ndarray:
    """A red square walking right over a striped grey background: uint8 [T, H, W, 3]."""
    h, w = size
    frames = np.zeros((num_frames, h, w, 3), np.uint8)
    frames[:] = (40 + 30 * (np.arange(w) // 8 % 2))[None, None, :, None]
    for t in range(num_frames):
        x = 20 + 3 * t
        frames[t, 30:70, x : x + 36] = (220, 40, 40)
    return frames


@pytest.fixture
def engines(tmp_path) -> Engines:
    return make_engines(tmp_path)


def make_engines(tmp_path: Path) -> Engines:
    """Tiny-random settings at the test size with the classic tracker; no generator."""
    args = build_parser().parse_args(["--tiny-random", "--projects-dir", str(tmp_path / "projects")])
    settings = settings_from_args(args)
    settings.work_size = (H, W)
    settings.max_upload_mb = 1.0
    settings.max_seconds = 4.0
    engines = Engines(settings)
    engines.tracker, engines.tracker_status = build_tracker(args, settings)
    return engines


@pytest.fixture
def video_file(tmp_path) -> Path:
    from mvideo_core.video_io import write_video

    return write_video(tmp_path / "walk.mp4", _frames(), 8.0)


@pytest.fixture
def session(engines, video_file):
    session = SessionStore().get("s1")
    video_step.load_video(engines, session, video_file)
    return session


def _square_center(t: int) -> tuple[float, float]:
    return 20 + 3 * t + 18, 50.0


# -- step 1: video -----------------------------------------------------------------------------------------------
def test_load_video_decodes_at_model_fps_and_working_size_and_autosaves(engines, video_file):
    session = SessionStore().get("s")
    summary = video_step.load_video(engines, session, video_file)
    assert session.frames.shape == (T, H, W, 3)
    assert summary.num_frames == T and summary.first_frame.shape == (H, W, 3)
    assert "8 fps" in summary.info and f"{W}x{H}" in summary.info
    assert session.project.source_path().read_bytes() == video_file.read_bytes()
    assert session.tracker_state is not None and session.tracker_state.num_frames == T


def test_load_video_trim_keeps_only_the_chosen_seconds(engines, video_file):
    session = SessionStore().get("s")
    video_step.load_video(engines, session, video_file, start=0.5, end=1.5)
    assert len(session.frames) == 8


def test_text_file_renamed_mp4_is_refused_with_a_clear_error(engines, tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 10)
    with pytest.raises(StudioError, match="could not be read as a video"):
        video_step.load_video(engines, SessionStore().get("s"), fake)


def test_empty_upload_is_refused(engines, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(StudioError, match="is empty"):
        video_step.load_video(engines, SessionStore().get("s"), empty)


def test_over_limit_upload_is_refused_naming_the_limit_and_flag(engines, tmp_path):
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * 1_200_000)
    with pytest.raises(StudioError, match=r"over the 1 MB upload limit.*--max-upload-mb"):
        video_step.load_video(engines, SessionStore().get("s"), big)


def test_wrong_extension_and_missing_upload_are_refused(engines, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("hello")
    with pytest.raises(StudioError, match="not a supported video type"):
        video_step.load_video(engines, SessionStore().get("s"), doc)
    with pytest.raises(StudioError, match="no file was uploaded"):
        video_step.load_video(engines, SessionStore().get("s"), None)


def test_too_long_video_asks_for_a_trim(engines, tmp_path):
    from mvideo_core.video_io import write_video

    long = write_video(tmp_path / "long.mp4", _frames(48), 8.0)  # 6 s > 4 s limit
    with pytest.raises(StudioError, match=r"6\.0 s long.*at most 4 s.*--max-seconds"):
        video_step.load_video(engines, SessionStore().get("s"), long)
    session = SessionStore().get("s")
    video_step.load_video(engines, session, long, start=1.0, end=4.0)  # a trimmed part within the limit loads
    assert len(session.frames) == 24


def test_a_failed_upload_leaves_the_loaded_video_untouched(engines, session, tmp_path):
    before = session.frames
    bad = tmp_path / "bad.mp4"
    bad.write_text("garbage")
    with pytest.raises(StudioError):
        video_step.load_video(engines, session, bad)
    assert session.frames is before


# -- step 2: masks -----------------------------------------------------------------------------------------------
def test_click_creates_an_object_whose_mask_covers_the_clicked_subject(engines, session):
    x, y = _square_center(0)
    preview, obj_id = masks_step.click(engines, session, 0, x, y, True, None)
    assert obj_id == 1 and preview.shape == (H, W, 3)
    mask = session.tracker_state.objects[1].masks[0]
    assert mask[int(y), int(x)]
    truth = np.zeros((H, W), bool)
    truth[30:70, 20:56] = True
    assert (mask & truth).sum() / mask.sum() > 0.9  # the mask stays on the subject
    assert not np.array_equal(preview, session.frames[0])  # the overlay is drawn


def _add_box(engines, session, box=(18, 28, 58, 72), label="square"):
    """Pick a candidate box as Detect would offer it."""
    session.candidates = [{"box": list(box), "score": 0.9, "label": label, "frame": 0}]
    return masks_step.add_candidates(engines, session, masks_step.candidate_choices(session))


def test_picked_candidate_box_becomes_a_named_object_covering_the_subject(engines, session):
    preview = _add_box(engines, session)
    assert preview.shape == (H, W, 3)
    assert masks_step.objects_table(session)[0][:2] == [1, "square"]
    mask = session.tracker_state.objects[1].masks[0]
    truth = np.zeros((H, W), bool)
    truth[30:70, 20:56] = True
    assert (mask & truth).sum() / (mask | truth).sum() > 0.8


def test_the_same_phrase_kept_on_another_frame_refines_its_object(engines, session):
    """Detect "square" on frame 0, keep, propagate; Detect "square" again on frame 8 and keep: object 1 gets a box
    on frame 8 (as the extract CLI does with one phrase on two frames), no second "square". A second box of the
    phrase on that frame, and another phrase, are new objects; the notes say which is which."""
    _add_box(engines, session)
    masks_step.propagate(engines, session)
    x = 20 + 3 * 8  # the square's left edge on frame 8
    session.candidates = [
        {"box": [x - 2, 28, x + 38, 72], "score": 0.9, "label": "square", "frame": 8},
        {"box": [100, 5, 140, 25], "score": 0.6, "label": "square", "frame": 8},
        {"box": [0, 80, 30, 95], "score": 0.5, "label": "stripe", "frame": 8},
    ]
    notes: list[str] = []
    masks_step.add_candidates(engines, session, masks_step.candidate_choices(session), notes)
    objects = session.tracker_state.objects
    assert sorted(objects) == [1, 2, 3] and sorted(objects[1].prompts) == [0, 8]
    assert objects[1].prompts[8].box is not None and sorted(objects[2].prompts) == [8]
    assert [row[1] for row in masks_step.objects_table(session)] == ["square", "square", "stripe"]
    assert notes == [
        "The square box on frame 8 refines object 1 (square).",
        "The square box on frame 8 starts object 2 (square).",
        "The stripe box on frame 8 starts object 3 (stripe).",
    ]
    # on a frame the object already has a box: the box that covers its mask refines it again (no third square)
    session.candidates = [{"box": [17, 27, 57, 71], "score": 0.9, "label": "square", "frame": 0}]
    masks_step.add_candidates(engines, session, masks_step.candidate_choices(session), notes)
    assert notes[-1] == "The square box on frame 0 refines object 1 (square)." and sorted(objects) == [1, 2, 3]
    assert list(objects[1].prompts[0].box) == [17, 27, 57, 71]
    # a subject lost on frame 12 (its mask there empty) and detected again: the box refines it, wherever it is
    objects[1].masks[12] = np.zeros((H, W), bool)
    session.candidates = [{"box": [0, 0, 30, 30], "score": 0.9, "label": "square", "frame": 12}]
    masks_step.add_candidates(engines, session, masks_step.candidate_choices(session), notes)
    assert notes[-1] == "The square box on frame 12 refines object 1 (square)." and 12 in objects[1].prompts
    # the only "stripe", its box on frame 4 away from its mask: the phrase names it, the box corrects it
    session.candidates = [{"box": [100, 60, 140, 90], "score": 0.9, "label": "stripe", "frame": 4}]
    masks_step.add_candidates(engines, session, masks_step.candidate_choices(session), notes)
    assert notes[-1] == "The stripe box on frame 4 refines object 3 (stripe)." and sorted(objects) == [1, 2, 3]


def test_picking_no_candidate_or_a_stale_one_is_refused(engines, session):
    with pytest.raises(StudioError, match="tick at least one"):
        masks_step.add_candidates(engines, session, [])
    with pytest.raises(StudioError, match="run Detect again"):
        masks_step.add_candidates(engines, session, ["3: dog (0.50)"])


def test_detect_without_text_or_detector_says_what_to_do(engines, session):
    with pytest.raises(StudioError, match="type what to track"):
        masks_step.detect(engines, session, " . ", 0)
    with pytest.raises(StudioError, match="text detection is unavailable"):
        masks_step.detect(engines, session, "person", 0)


def test_a_new_object_cannot_start_with_a_negative_click(engines, session):
    with pytest.raises(StudioError, match="positive click"):
        masks_step.click(engines, session, 0, 10, 10, False, None)
    assert masks_step.objects_table(session) == []


def test_click_outside_the_frame_or_video_is_a_clear_error(engines, session):
    with pytest.raises(StudioError, match="outside"):
        masks_step.click(engines, session, 0, W + 50, 10, True, None)
    with pytest.raises(StudioError, match=r"frame 99 is outside the video"):
        masks_step.click(engines, session, 99, 10, 10, True, None)


def test_propagate_tracks_the_subject_through_every_frame_and_writes_an_overlay(engines, session):
    _add_box(engines, session)
    calls = []
    path = masks_step.propagate(engines, session, lambda done, total, desc: calls.append((done, total)))
    assert Path(path).is_file() and session.project.contains(path)
    assert session.masks.masks.shape == (1, T, H, W)
    assert calls[-1][0] == calls[-1][1] == T - 1
    for t in (5, T - 1):
        cx, cy = _square_center(t)
        assert session.masks.masks[0, t, int(cy), int(cx)], f"frame {t} lost the subject"
    assert masks_step.objects_table(session)[0][:2] == [1, "square"]


def test_stop_during_propagation_keeps_finished_frames_and_the_session(engines, session):
    _add_box(engines, session)

    def stop_after_two(done, total, desc):
        if done == 2:
            session.cancel.set()

    with pytest.raises(StudioError, match="stopped"):
        masks_step.propagate(engines, session, stop_after_two)
    assert session.masks is not None and session.masks.masks[0, :3].any(axis=(1, 2)).all()
    masks_step.propagate(engines, session)  # Propagate again finishes the job
    assert session.masks.masks[0].any(axis=(1, 2)).all()


def test_propagate_without_objects_says_what_to_do(engines, session):
    with pytest.raises(StudioError, match="add an object first"):
        masks_step.propagate(engines, session)


def test_rename_and_delete_objects(engines, session):
    masks_step.click(engines, session, 0, *_square_center(0), True, None)
    masks_step.click(engines, session, 0, 130, 85, True, None)
    masks_step.rename_object(session, "1", "runner")
    assert [r[1] for r in masks_step.objects_table(session)] == ["runner", "object 2"]
    masks_step.delete_object(engines, session, "2")
    assert [r[0] for r in masks_step.objects_table(session)] == [1]
    with pytest.raises(StudioError, match="no object 7"):
        masks_step.delete_object(engines, session, "7")


def test_steps_need_a_video_first(engines):
    session = SessionStore().get("fresh")
    with pytest.raises(StudioError, match="load a video first"):
        masks_step.click(engines, session, 0, 1, 1, True, None)


# -- step 3: edit ------------------------------------------------------------------------------------------------
@pytest.fixture
def tracked(engines, session):
    _add_box(engines, session)
    masks_step.propagate(engines, session)
    return session


def test_edit_starts_as_identity_of_the_extracted_masks(engines, tracked):
    edit_step.start_edit(engines, tracked, reset=True)
    np.testing.assert_array_equal(edit_step.edited_masks(engines, tracked).masks, tracked.masks.masks)
    assert tracked.project.load_recipe()["layers"][0]["source"] == edit_step.MAIN_SOURCE


def test_zoom_keyframe_grows_the_subject_by_the_requested_factor(engines, tracked):
    edit_step.start_edit(engines, tracked, reset=True)
    end = (T - 1) / 8.0
    edit_step.add_keyframe(engines, tracked, "1", end, 1.5, 0, 0, 0, "linear", "centroid")
    edited = edit_step.edited_masks(engines, tracked).masks[0]
    area0, area1 = tracked.masks.masks[0, -1].sum(), edited[-1].sum()
    assert edited[0].sum() == tracked.masks.masks[0, 0].sum()  # identity key at 0 s
    assert area1 / area0 == pytest.approx(1.5**2, rel=0.15)


def test_uphill_terrain_raises_the_ground_line_over_time(engines, tracked):
    edit_step.start_edit(engines, tracked, reset=True)
    edit_step.set_terrain(engines, tracked, "1", "uphill", 0.2, 0.0)
    edited = edit_step.edited_masks(engines, tracked).masks[0]

    def bottom(mask):
        return np.nonzero(mask.any(axis=1))[0].max()

    original = tracked.masks.masks[0]
    assert bottom(edited[0]) == pytest.approx(bottom(original[0]), abs=1)
    assert bottom(original[-1]) - bottom(edited[-1]) == pytest.approx(0.2 * H, abs=3)


def test_undo_and_redo_walk_the_edit_history(engines, tracked):
    first = edit_step.start_edit(engines, tracked, reset=True)
    zoomed = edit_step.add_keyframe(engines, tracked, "1", 1.0, 1.3)
    assert edit_step.undo(engines, tracked) == first
    assert tracked.project.load_recipe() == first  # autosaved on undo
    assert edit_step.redo(engines, tracked) == zoomed
    with pytest.raises(StudioError, match="nothing to redo"):
        edit_step.redo(engines, tracked)


def test_bad_edit_values_are_refused_and_history_is_unchanged(engines, tracked):
    recipe = edit_step.start_edit(engines, tracked, reset=True)
    with pytest.raises(StudioError, match="outside the edit's"):
        edit_step.add_keyframe(engines, tracked, "1", 99.0, 1.2)
    with pytest.raises(StudioError, match="zoom must be > 0"):
        edit_step.add_keyframe(engines, tracked, "1", 0.5, 0)
    with pytest.raises(StudioError, match="speed must be > 0"):
        edit_step.set_timing(engines, tracked, "1", 0, 0)
    assert edit_step.start_edit(engines, tracked) == recipe and not tracked.undo.can_undo


def test_timing_and_length_change_the_rendered_timeline(engines, tracked):
    edit_step.start_edit(engines, tracked, reset=True)
    edit_step.set_length(engines, tracked, 4.0)
    masks = edit_step.edited_masks(engines, tracked)
    assert masks.num_frames == 33  # 4 s at 8 fps, one model clip
    assert masks.masks[0].any(axis=(1, 2)).all()  # the layer loops to fill the length
    edit_step.set_timing(engines, tracked, "1", 1.0, 2.0)
    shifted = edit_step.edited_masks(engines, tracked).masks[0]
    original = tracked.masks.masks[0]
    np.testing.assert_array_equal(shifted[8], original[0])  # starts at 1 s = frame 8
    np.testing.assert_array_equal(shifted[9], original[2])  # at twice the speed


def test_recipe_download_upload_round_trip_and_bad_recipe(engines, tracked, tmp_path):
    edit_step.start_edit(engines, tracked, reset=True)
    zoomed = edit_step.add_keyframe(engines, tracked, "1", 1.0, 1.4)
    path = edit_step.recipe_file(engines, tracked)
    edit_step.undo(engines, tracked)
    assert edit_step.load_recipe_file(engines, tracked, path) == zoomed
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 1, "target": {}, "layers": []}))
    with pytest.raises(StudioError, match="not a usable recipe"):
        edit_step.load_recipe_file(engines, tracked, bad)
    assert edit_step.start_edit(engines, tracked) == zoomed


def test_edit_preview_frame_and_video(engines, tracked):
    edit_step.start_edit(engines, tracked, reset=True)
    frame = edit_step.edit_preview_frame(engines, tracked, 3)
    assert frame.shape == (H, W, 3) and not np.array_equal(frame, tracked.frames[3])
    assert tracked.project.contains(edit_step.edit_preview_video(engines, tracked))


# -- projects and sessions ---------------------------------------------------------------------------------------
def test_reopen_after_restart_brings_back_source_and_recipe(engines, tracked):
    edit_step.start_edit(engines, tracked, reset=True)
    recipe = edit_step.add_keyframe(engines, tracked, "1", 1.0, 1.2)
    project_id = tracked.project.project_id
    fresh = SessionStore().get("after-restart")  # a new server process: nothing in memory
    reopened = project_step.reopen_project(engines, fresh, project_id)
    assert "Used:" in reopened.info and reopened.notes == []
    np.testing.assert_array_equal(fresh.frames, tracked.frames)
    np.testing.assert_array_equal(fresh.masks.masks, tracked.masks.masks)
    assert edit_step.start_edit(engines, fresh) == recipe  # the edit is back, ready to undo/redo further
    np.testing.assert_array_equal(
        edit_step.edited_masks(engines, fresh).masks, edit_step.edited_masks(engines, tracked).masks
    )


def test_reopen_refuses_malformed_and_unknown_ids(engines):
    session = SessionStore().get("s")
    with pytest.raises(StudioError, match="is not a project id"):
        project_step.reopen_project(engines, session, "../../etc")
    with pytest.raises(StudioError, match="no project"):
        project_step.reopen_project(engines, session, "20260101-000000-0123456789ab")


def test_project_outputs_stay_inside_the_project(tmp_path):
    project = create_project(tmp_path)
    assert open_project(tmp_path, project.project_id).root == project.root
    with pytest.raises(ProjectError):
        project.output_path("../escape.mp4")
    assert not project.contains(tmp_path / "elsewhere.mp4")


def test_two_sessions_never_share_state(engines, video_file):
    store = SessionStore()
    a, b = store.get("a"), store.get("b")
    video_step.load_video(engines, a, video_file)
    masks_step.click(engines, a, 0, *_square_center(0), True, None)
    assert b.frames is None and b.project is None and masks_step.objects_table(b) == []
    video_step.load_video(engines, b, video_file)
    assert b.project.root != a.project.root and masks_step.objects_table(b) == []


def test_freeing_a_session_drops_it_and_cancels_its_jobs():
    store = SessionStore()
    session = store.get("x")
    assert store.free("x") and "x" not in store and session.cancel.is_set()
    assert not store.free("x")
