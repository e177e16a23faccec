"""The project folder as the one source of truth: atomic writes, and a reopen that restores every step as it was."""

from __future__ import annotations

import json
import threading
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.projects import ProjectError, atomic_path, create_project, list_projects, open_project, write_text_atomic
from app.sessions import SessionStore
from app.steps import edit as edit_step
from app.steps import generate as generate_step
from app.steps import masks as masks_step
from app.steps import project as project_step
from app.steps import video as video_step
from app.steps.common import StudioError
from app.tabs.generate import GenerateTab
from mvideo_core.masks import load_masks
from mvideo_core.video_io import write_video
from tests.test_app_adapters import T, _frames, _square_center, make_engines


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file of a folder with its modification time and bytes."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def engines(tmp_path):
    return make_engines(tmp_path)


BLUE = (slice(76, 94), slice(104, 136))  # a blue box standing still below the walking red square


@pytest.fixture
def session(engines, tmp_path):
    frames = _frames()
    frames[:, BLUE[0], BLUE[1]] = (40, 60, 220)
    session = SessionStore().get("s1")
    video_step.load_video(engines, session, write_video(tmp_path / "walk.mp4", frames, 8.0))
    return session


@pytest.fixture
def two_objects(engines, session):
    """The walking square (object 1: a box and an exclude click) and the blue box (object 2, a click, renamed), both
    propagated over every frame."""
    session.candidates = [{"box": [18, 28, 58, 72], "score": 0.9, "label": "square", "frame": 0}]
    masks_step.add_candidates(engines, session, masks_step.candidate_choices(session))
    masks_step.click(engines, session, 0, 40, 85, False, 1)  # a refinement: object 1 gets an exclude click
    masks_step.click(engines, session, 0, 120, 85, True, None)
    masks_step.rename_object(session, "2", "box")
    masks_step.propagate(engines, session)
    assert session.masks.masks.any(axis=(2, 3)).all()  # both tracked through every frame
    return session


# -- atomic writes -----------------------------------------------------------------------------------------------
def test_a_failed_write_leaves_the_old_file_whole_and_no_temporary_file(tmp_path):
    path = tmp_path / "project.json"
    write_text_atomic(path, '{"ok": 1}')
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text('{"half": ')  # a crash in the middle of writing
        raise RuntimeError("power cut")
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["project.json"]


def test_masks_are_written_whole_or_not_at_all(engines, two_objects, monkeypatch):
    project = two_objects.project
    before = project.masks_path.read_bytes()

    def torn_save(maskset, path, format=None):
        Path(path).write_bytes(b"PK\x03\x04 torn")
        raise OSError("disk full")

    monkeypatch.setattr("app.projects.save_masks", torn_save)
    with pytest.raises(OSError, match="disk full"):
        project.save_masks(two_objects.masks)
    assert project.masks_path.read_bytes() == before
    assert not [p for p in project.root.iterdir() if p.name.startswith(".masks")]


def test_concurrent_updates_of_the_record_lose_nothing(tmp_path):
    project = create_project(tmp_path)

    def writer(k: int) -> None:
        for i in range(20):
            project.update_meta(**{f"w{k}": i})

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(project.meta()[f"w{k}"] == 19 for k in range(6))


# -- restore -----------------------------------------------------------------------------------------------------
def test_reopen_restores_objects_with_their_prompts_masks_and_names(engines, two_objects):
    fresh = SessionStore().get("after-restart")
    reopened = project_step.reopen_project(engines, fresh, two_objects.project.project_id)
    assert reopened.notes == []
    np.testing.assert_array_equal(fresh.masks.masks, two_objects.masks.masks)
    assert fresh.masks.names == ["square", "box"]
    assert masks_step.objects_table(fresh) == masks_step.objects_table(two_objects)  # names, colours, T frames
    for obj_id, obj in two_objects.tracker_state.objects.items():
        restored = fresh.tracker_state.objects[obj_id]
        assert sorted(restored.prompts) == sorted(obj.prompts) and not restored.pending
        np.testing.assert_array_equal(restored.prompts[0].points, obj.prompts[0].points)
        np.testing.assert_array_equal(restored.prompts[0].labels, obj.prompts[0].labels)
    assert fresh.points == two_objects.points  # the clicks are drawn again


def test_refining_after_a_reopen_keeps_the_other_objects(engines, two_objects):
    fresh = SessionStore().get("after-restart")
    project_step.reopen_project(engines, fresh, two_objects.project.project_id)
    masks_step.click(engines, fresh, 8, *_square_center(8), True, 1)
    masks_step.propagate(engines, fresh)
    saved = load_masks(fresh.project.masks_path)
    assert saved.ids == [1, 2] and saved.names == ["square", "box"]
    np.testing.assert_array_equal(saved.masks[1], two_objects.masks.masks[1])  # the other object is untouched
    assert saved.masks[0].any(axis=(1, 2)).all()


def test_a_deleted_object_stays_deleted_and_the_last_one_takes_the_file_along(engines, two_objects):
    masks_step.delete_object(engines, two_objects, "2")
    fresh = SessionStore().get("a")
    project_step.reopen_project(engines, fresh, two_objects.project.project_id)
    assert [r[0] for r in masks_step.objects_table(fresh)] == [1] and fresh.masks.ids == [1]
    masks_step.delete_object(engines, fresh, "1")
    assert not fresh.project.masks_path.exists()
    again = SessionStore().get("b")
    project_step.reopen_project(engines, again, two_objects.project.project_id)
    assert again.masks is None and masks_step.objects_table(again) == []


def test_reopen_restores_the_edit_with_its_undo_and_redo_history(engines, two_objects):
    first = edit_step.start_edit(engines, two_objects, reset=True)
    zoomed = edit_step.add_keyframe(engines, two_objects, "1", 1.0, 1.3)
    terrain = edit_step.set_terrain(engines, two_objects, "1", "uphill", 0.2)
    edit_step.undo(engines, two_objects)  # the terrain waits in the redo branch
    fresh = SessionStore().get("after-restart")
    project_step.reopen_project(engines, fresh, two_objects.project.project_id)
    assert edit_step.start_edit(engines, fresh) == zoomed
    assert edit_step.redo(engines, fresh) == terrain
    assert edit_step.undo(engines, fresh) == zoomed and edit_step.undo(engines, fresh) == first


def test_start_editing_again_is_one_more_undoable_step(engines, two_objects):
    edit_step.start_edit(engines, two_objects, reset=True)
    zoomed = edit_step.add_keyframe(engines, two_objects, "1", 1.0, 1.3)
    edit_step.start_edit(engines, two_objects, reset=True)
    assert edit_step.undo(engines, two_objects) == zoomed


def test_reopen_reads_only(engines, two_objects):
    edit_step.start_edit(engines, two_objects, reset=True)
    edit_step.add_keyframe(engines, two_objects, "1", 1.0, 1.3)
    masks_step.overlay_video(two_objects)
    before = _snapshot(two_objects.project.root)
    project_step.reopen_project(engines, SessionStore().get("x"), two_objects.project.project_id)
    assert _snapshot(two_objects.project.root) == before


def test_reopen_restores_the_trim_and_the_generation_record(engines, tmp_path):
    session = SessionStore().get("s")
    video_step.load_video(engines, session, write_video(tmp_path / "v.mp4", _frames(), 8.0), start=0.5, end=1.5)
    form = generate_step.GenerationRequest("a square", "", 4, 2, 6.0, 7, mask_policy="loop")
    session.project.update_meta(generation=form.settings())
    fresh = SessionStore().get("t")
    reopened = project_step.reopen_project(engines, fresh, session.project.project_id)
    assert "0.5 s to 1.5 s" in reopened.info and len(fresh.frames) == 8
    assert fresh.project.meta()["generation"] == {
        "prompt": "a square", "negative_prompt": "", "seconds": 4, "steps": 2, "guidance": 6.0, "seed": 7,
        "mask_guidance": 1.0, "mask_policy": "loop", "engine": "mvideo",
    }  # fmt: skip


def test_the_generate_form_is_kept_as_it_is_set_and_its_start_image_comes_back(engines, session):
    """Before any Generate: each field and the start image are in the project as soon as they are set; a reopen in
    another session finds them; clearing the picture removes its file."""
    rgba = np.zeros((12, 16, 4), np.uint8)
    rgba[..., 0], rgba[3:9, 4:12, 1], rgba[..., 3] = 200, 180, 90
    generate_step.save_draft(session, prompt="a fox", seconds=8, mask_policy="loop", engine="mvideo")
    generate_step.keep_start_image(session, rgba)
    fresh = SessionStore().get("t")
    project_step.reopen_project(engines, fresh, session.project.project_id)
    saved = fresh.project.meta()["generation"]
    assert saved == {"prompt": "a fox", "seconds": 8, "mask_policy": "loop", "engine": "mvideo", "start_image": "start_image.png"}  # fmt: skip
    picture = generate_step.saved_start_image(fresh.project, saved)
    assert picture is not None and np.array_equal(np.asarray(Image.open(picture)), rgba[..., :3])  # RGB, exact

    generate_step.keep_start_image(fresh, None)
    assert fresh.project.meta()["generation"]["start_image"] is None and not picture.exists()
    assert generate_step.saved_start_image(fresh.project, {"start_image": "../../etc/passwd"}) is None
    with pytest.raises(ValueError, match="not a Generate-form field: colour"):
        generate_step.save_draft(fresh, colour="red")
    with pytest.raises(StudioError, match="must be an RGB picture, got an array of shape \\(4, 4, 2\\)"):
        generate_step.keep_start_image(fresh, np.zeros((4, 4, 2), np.uint8))
    assert fresh.project.meta()["generation"]["prompt"] == "a fox"  # a refused picture loses nothing


def test_fields_set_at_the_same_time_are_all_kept(session):
    """Each widget saves on its own event, and events run in parallel: no field's write drops another's."""
    names = ["prompt", "negative_prompt", "steps", "guidance", "seed", "mask_guidance"]
    threads = [
        threading.Thread(target=lambda n=n: [generate_step.save_draft(session, **{n: f"{n}-{i}"}) for i in range(20)])
        for n in names
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert session.project.meta()["generation"] == {n: f"{n}-19" for n in names}


def test_a_session_without_a_project_keeps_no_draft(engines):
    empty = SessionStore().get("nobody")
    generate_step.save_draft(empty, prompt="a fox")
    generate_step.keep_start_image(empty, np.zeros((4, 4, 3), np.uint8))
    assert empty.project is None


def test_the_length_note_asks_what_follows_the_motion_whenever_the_video_outlasts_it():
    """The after-the-motion choice shows for a video longer than the motion, also one of whole clips made longer
    by hand (a 4 s motion made 8 s held its last frame silently); a shorter video says it ends first."""
    tab = GenerateTab(**{f.name: f.name for f in fields(GenerateTab)})  # components as their names
    four = generate_step.MotionLength(seconds=4.0, clips=1, whole_clips=1, clip_seconds=4.0)
    six = generate_step.MotionLength(seconds=6.0, clips=2, whole_clips=1, clip_seconds=4.0)
    cases = [
        (four, 4, "The motion lasts 4.0 s: 1 clip of 4 s hold it.", False),
        (four, 8, "The motion lasts 4.0 s: 1 clip of 4 s hold it; the video is 8 s, so after the motion ends:", True),
        (six, 8, "The motion lasts 6.0 s: 2 clips of 4 s hold it; after it ends:", True),
        (six, None, "The motion lasts 6.0 s: 2 clips of 4 s hold it; after it ends:", True),
        (
            six,
            4,
            "The motion lasts 6.0 s: 2 clips of 4 s hold it; the video (4 s) ends before the motion does.",
            False,
        ),
        (None, 8, "No masks yet: the video follows the text only.", False),
    ]
    for length, seconds, note, shown in cases:
        view = tab.length_note_view(length, 4.0, seconds, "loop")
        assert view["length_note"] == note and view["mask_policy"].visible is shown, (length, seconds)


def test_a_failed_reopen_leaves_the_session_as_it_was(engines, two_objects, tmp_path):
    other = SessionStore().get("other")
    video_step.load_video(engines, other, two_objects.source_path)
    (other.project.root / "project.json").write_text("{ torn")
    frames, project = two_objects.frames, two_objects.project
    with pytest.raises(StudioError, match="cannot be reopened"):
        project_step.reopen_project(engines, two_objects, other.project.project_id)
    assert two_objects.frames is frames and two_objects.project is project


# -- owners ------------------------------------------------------------------------------------------------------
def test_on_a_shared_host_a_project_opens_only_with_its_key(tmp_path):
    project = create_project(tmp_path)
    assert open_project(tmp_path, project.project_id, project.key, require_key=True).root == project.root
    for key in (None, "", "guess", project.key[:-1]):
        with pytest.raises(ProjectError, match="cannot be opened from this browser"):
            open_project(tmp_path, project.project_id, key, require_key=True)
    with pytest.raises(ProjectError, match="cannot be opened from this browser"):  # unknown ids read the same
        open_project(tmp_path, "20260101-000000-0123456789ab", project.key, require_key=True)
    assert open_project(tmp_path, project.project_id).root == project.root  # the local host: the id is enough
    assert "key" not in json.dumps(project.meta()).replace("key_sha256", "")  # only the key's hash is stored
    assert project.key not in (project.root / "project.json").read_text()


def test_the_studio_is_shared_unless_it_listens_on_this_machine_only(engines):
    settings = engines.settings
    assert not settings.shared
    settings.host = "0.0.0.0"
    assert settings.shared
    settings.host, settings.share = "127.0.0.1", True
    assert settings.shared


def test_local_project_list_names_each_project_newest_first(engines, tmp_path):
    first = create_project(tmp_path)
    session = SessionStore().get("s")
    engines.settings.projects_dir = tmp_path
    video_step.load_video(engines, session, write_video(tmp_path / "clip.mp4", _frames(), 8.0))
    rows = list_projects(tmp_path)
    assert [r[1] for r in rows] == sorted([first.project_id, session.project.project_id], reverse=True)
    assert dict((v, k) for k, v in rows)[session.project.project_id].endswith("clip.mp4")


def test_the_record_names_each_object_its_prompts_and_its_tracked_frames(engines, two_objects):
    objects = two_objects.project.meta()["objects"]
    assert sorted(objects) == ["1", "2"] and objects["2"]["name"] == "box"
    square = objects["1"]["prompts"]["0"]
    assert square["box"] == [18, 28, 58, 72] and square["labels"] == [0] and objects["1"]["done"] == [[0, T]]


def test_a_new_video_under_an_old_edit_says_so_instead_of_failing(engines, two_objects, tmp_path):
    """The edit tab's view after a new video: its recipe's objects are gone, which it says (it used to raise)."""
    from dataclasses import fields

    from app.tabs.common import StudioContext
    from app.tabs.edit import EditTab

    edit_step.start_edit(engines, two_objects, reset=True)
    video_step.load_video(engines, two_objects, write_video(tmp_path / "other.mp4", _frames()[::-1].copy(), 8.0))
    tab = EditTab(*[object() for _ in fields(EditTab)])  # stand-ins for the components: the view keys its updates
    view = tab.view(StudioContext(engines, SessionStore()), two_objects)
    assert view[tab.preview] is None and "Press **Start editing** to edit the new masks" in view[tab.status]
