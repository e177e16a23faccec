"""Generate step, text detection, mask import/export, flags and the page build, without a browser."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli import build_parser
from app.engines import Engines, build_engines, build_generator, build_tracker, gpu_function, settings_from_args
from app.sessions import SessionStore
from app.steps import edit as edit_step
from app.steps import generate as generate_step
from app.steps import layers, mask_files
from app.steps import masks as masks_step
from app.steps import project as project_step
from app.steps import video as video_step
from app.steps.common import StudioError
from mvideo_core.extraction import Detections
from tests.test_app_adapters import H, W, _frames


def _engines(tmp_path, generator: bool = False) -> Engines:
    args = build_parser().parse_args(["--tiny-random", "--projects-dir", str(tmp_path / "projects")])
    settings = settings_from_args(args)
    settings.work_size = (H, W)
    engines = Engines(settings)
    engines.tracker, engines.tracker_status = build_tracker(args, settings)
    if generator:
        engines.generator, engines.generation_status = build_generator(args, settings)
    return engines


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory):
    """The --tiny-random pipeline, built once: saved to a folder and loaded by the production loader."""
    return build_generator(build_parser().parse_args(["--tiny-random"]), settings_from_args(build_parser().parse_args(["--tiny-random"])))  # fmt: skip


@pytest.fixture
def tracked(tmp_path, tiny_generator):
    from mvideo_core.video_io import write_video

    engines = _engines(tmp_path)
    engines.generator, engines.generation_status = tiny_generator
    session = SessionStore().get("g")
    video_step.load_video(engines, session, write_video(tmp_path / "walk.mp4", _frames(), 8.0))
    session.candidates = [{"box": [18, 28, 58, 72], "score": 0.9, "label": "square", "frame": 0}]
    masks_step.add_candidates(engines, session, masks_step.candidate_choices(session))
    masks_step.propagate(engines, session)
    return engines, session


# -- generate ----------------------------------------------------------------------------------------------------
def test_generate_records_the_start_image_it_used_in_the_project(tracked):
    """A start image given to Generate (the page, or the API without an upload event) is the project's, on disk."""
    engines, session = tracked
    picture = np.full((16, 24, 3), 90, np.uint8)
    form = generate_step.check_generation(engines, "a square", "", 4, 1, 6.0, 0, start_image=picture)
    generate_step.plan_generation(engines, session, form)
    saved = session.project.meta()["generation"]
    path = generate_step.saved_start_image(session.project, saved)
    assert saved["start_image"] == "start_image.png" and path is not None and path.is_file()
    form = generate_step.check_generation(engines, "a square", "", 4, 1, 6.0, 0)
    generate_step.plan_generation(engines, session, form)  # without one: none is kept
    assert session.project.meta()["generation"]["start_image"] is None and not path.exists()


def test_without_a_generator_generate_names_the_missing_weights_and_flags(tmp_path):
    args = build_parser().parse_args(["--projects-dir", str(tmp_path), "--device", "cpu", "--no-toy"])
    engines = Engines(settings_from_args(args))
    engines.generator, engines.generation_status = build_generator(args, engines.settings)
    assert engines.generator is None
    with pytest.raises(StudioError) as err:
        generate_step.check_generation(engines, "a dog", "", 4)
    message = str(err.value)
    assert "--base-model" in message and "--mvideo-weights" in message and "--tiny-random" in message


def test_no_gpu_is_explained_when_no_device_is_forced(tmp_path):
    args = build_parser().parse_args(["--projects-dir", str(tmp_path), "--no-toy"])
    settings = settings_from_args(args)
    if settings.device != "cpu":
        pytest.skip("this machine has a GPU")
    pipe, status = build_generator(args, settings)
    assert pipe is None and "no CUDA GPU" in status and "--tiny-random" in status


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("prompt", "   ", "prompt is empty .*write a prompt"),
        ("seconds", 6, "length must be a positive multiple of 4 \\(clips are 4 s\\), got 6"),
        ("seconds", 0, "length has to be a positive number of seconds"),
        ("seconds", "nan", "length has to be a positive number of seconds"),
        ("seconds", 10**9, "length is too long: .* over the limit of 3600 frames"),
        ("steps", 0, "steps has to be a whole number in 1..1000"),
        ("steps", 2.5, "steps has to be a whole number"),
        ("guidance", 99, "guidance has to be a finite number in 0..30"),
        ("guidance", "inf", "guidance has to be a finite number in 0..30"),
        ("seed", "abc", "seed has to be a whole number"),
        ("seed", -1, "seed has to be a whole number in 0.."),
        ("start_image", np.zeros((4, 4), np.uint8), "start image has to be an RGB picture"),
        ("mask_guidance", 0.5, "mask guidance has to be a finite number in 1..10"),
        ("mask_guidance", 50, "mask guidance has to be a finite number in 1..10"),
        ("mask_guidance", "strong", "mask guidance has to be a finite number in 1..10"),
    ],
)
def test_bad_generation_settings_name_the_field(tmp_path, tiny_generator, field, value, message):
    engines = _engines(tmp_path)
    engines.generator = tiny_generator[0]
    form = {"prompt": "a dog", "negative_prompt": "", "seconds": 8, "steps": 2, "guidance": 6.0, "seed": 0}
    form[field] = value
    with pytest.raises(StudioError, match=message):
        generate_step.check_generation(engines, **form)


def test_generate_streams_each_clip_then_the_final_video_and_record(tracked):
    engines, session = tracked
    edit_step.start_edit(engines, session, reset=True)
    edit_step.add_keyframe(engines, session, "1", 1.0, 1.5)
    form = generate_step.check_generation(engines, "a red square", "", 8, 1, 6.0, 3)
    updates = list(generate_step.generate(engines, session, form))
    clip_updates = [u for u in updates if u.clip]
    assert [Path(u.clip).name for u in clip_updates] == ["clip_000.mp4", "clip_001.mp4"]
    assert [len(u.clips) for u in clip_updates] == [1, 2]
    final = updates[-1]
    assert final.final and final.record and "Done: 2 clips, 65 frames" in final.status
    assert all(session.project.contains(p) for p in (*final.clips, final.final, final.record))
    record = json.loads(Path(final.record).read_text())
    assert record["settings"]["prompt"] == "a red square" and record["settings"]["seed"] == 3
    assert record["settings"]["masks_sha1"] is not None  # the edited masks conditioned it
    assert len(session.project.clip_paths()) == 2


def test_mask_guidance_reaches_the_pipeline_and_gets_its_own_folder(tracked):
    engines, session = tracked
    off = generate_step.check_generation(engines, "a red square", "", 4, 1, 6.0, 0)
    on = generate_step.check_generation(engines, "a red square", "", 4, 1, 6.0, 0, None, 2.5)
    assert (off.mask_guidance, on.mask_guidance) == (1.0, 2.5)
    final = list(generate_step.generate(engines, session, on))[-1]
    assert json.loads(Path(final.record).read_text())["settings"]["mask_guidance_scale"] == 2.5
    union = generate_step.model_masks(engines, generate_step.condition_masks(engines, session), 1)
    assert generate_step.generation_dir(session.project, on, union) != generate_step.generation_dir(
        session.project, off, union
    )


def test_stop_keeps_finished_clips_and_the_same_settings_resume(tracked):
    engines, session = tracked
    form = generate_step.check_generation(engines, "a red square", "", 8, 1, 6.0, 0)
    stream = generate_step.generate(engines, session, form)
    for update in stream:
        if update.clip:
            session.cancel.set()  # Stop pressed while clip 2 is being made
    assert "Stopped after 1 finished clip;" in update.status
    resumed = list(generate_step.generate(engines, session, form))
    assert "resumed from disk" in resumed[1].status and resumed[-1].final


def test_text_only_generation_without_masks(tmp_path, tiny_generator):
    engines = _engines(tmp_path)
    engines.generator, engines.generation_status = tiny_generator
    session = SessionStore().get("t")
    updates = list(
        generate_step.generate(engines, session, generate_step.check_generation(engines, "waves", "", 4, 1, 1.0, 0))
    )
    assert "from text only" in updates[0].status and updates[-1].final


# -- detection, import/export ------------------------------------------------------------------------------------
class FakeGrounder:
    def __init__(self):
        self.calls = []

    def detect(self, frame, phrases):
        self.calls.append((frame.shape, list(phrases)))
        return Detections(np.array([[18, 28, 58, 72], [90, 10, 130, 40]]), np.array([0.9, 0.4]), ["square", "dog"])


def test_detect_draws_numbered_candidates_and_keeps_the_picked_ones(tmp_path, tracked):
    engines, session = tracked
    engines.grounder = FakeGrounder()
    image, choices = masks_step.detect(engines, session, "square . dog", 2)
    assert engines.grounder.calls == [((H, W, 3), ["square", "dog"])]
    assert choices == ["1: square (0.90)", "2: dog (0.40)"]
    assert image.shape == (H, W, 3) and not np.array_equal(image, session.frames[2])
    masks_step.add_candidates(engines, session, choices[1:])
    assert [r[1] for r in masks_step.objects_table(session)] == ["square", "dog"]
    assert 2 in session.tracker_state.objects[2].prompts


@pytest.mark.parametrize("fmt", list(mask_files.MASK_FORMATS))
def test_export_then_import_masks_in_every_format(tracked, fmt):
    engines, session = tracked
    path = mask_files.export_masks(session, fmt)
    assert session.project.contains(path)
    before = session.masks.masks.copy()
    mask_files.import_masks(engines, session, path)
    iou = (before & session.masks.masks).sum() / (before | session.masks.masks).sum()
    assert iou >= 0.99
    assert masks_step.objects_table(session)[0][1] == "square"


def test_importing_a_broken_mask_file_is_a_clear_error(tracked, tmp_path):
    engines, session = tracked
    bad = tmp_path / "masks.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(StudioError, match="could not be read as masks"):
        mask_files.import_masks(engines, session, bad)
    assert session.masks is not None  # the previous masks are kept


def test_a_layer_from_a_mask_file_adds_a_second_subject(tracked):
    engines, session = tracked
    edit_step.start_edit(engines, session, reset=True)
    path = mask_files.export_masks(session, "NumPy npz")
    recipe = layers.add_layer_from_file(engines, session, path)
    assert len(recipe["layers"]) == 2
    assert edit_step.edited_masks(engines, session).num_objects == 2
    reopened = SessionStore().get("after-restart")
    project_step.reopen_project(
        engines, reopened, session.project.project_id
    )  # the extra layer's source comes back too
    assert edit_step.edited_masks(engines, reopened).num_objects == 2


# -- flags and page ----------------------------------------------------------------------------------------------
def test_defaults_bind_localhost_and_serve_only_the_projects_folder(tmp_path):
    from app.studio import launch_kwargs

    args = build_parser().parse_args(["--projects-dir", str(tmp_path / "p"), "--max-upload-mb", "5"])
    assert args.host == "127.0.0.1" and not args.share
    kwargs = launch_kwargs(Engines(settings_from_args(args)))
    assert kwargs["allowed_paths"] == [str((tmp_path / "p").resolve())]
    assert kwargs["max_file_size"] == 5 * 2**20 and kwargs["server_name"] == "127.0.0.1"
    assert kwargs["blocked_paths"] == [str((tmp_path / "p" / ".browser-secret").resolve())]


def test_gpu_decorator_is_a_no_op_without_spaces():
    def f(x):
        return x + 1

    assert gpu_function()(f) is f


def test_the_studio_builds_with_no_weights_and_frees_sessions_on_unload(tmp_path):
    from app.studio import build_studio

    args = build_parser().parse_args(["--projects-dir", str(tmp_path), "--device", "cpu", "--no-toy"])
    engines = build_engines(args)
    assert engines.generator is None and engines.tracker is not None
    demo = build_studio(engines)
    unload = [fn for fn in demo.fns.values() if fn.name == "cleanup"]
    assert len(unload) == 1
    demo.store.get("abc")
    assert "abc" in demo.store


def test_every_handler_that_runs_a_model_goes_through_spaces_gpu(tmp_path, monkeypatch):
    """On ZeroGPU a model may only run inside `spaces.GPU`: detect, click, keep, propagate, generate and reopen (which
    re-segments the saved prompts) are wrapped when `spaces` imports."""
    import sys
    import types

    from app.studio import build_studio

    wrapped: list[tuple[str, int | None]] = []

    def gpu(fn=None, duration=None):
        def wrap(f):
            wrapped.append((f.__name__, duration))
            return f

        return wrap if fn is None else wrap(fn)

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=gpu))
    args = build_parser().parse_args(["--projects-dir", str(tmp_path), "--device", "cpu", "--no-toy"])
    build_studio(build_engines(args))
    names = {name for name, _ in wrapped}
    assert {"on_detect", "on_click", "on_point", "on_keep", "on_propagate", "reopen_project"} <= names
    assert ("generate_clips", 600) in wrapped


def test_the_page_sweeps_gradios_cache_and_bad_server_flags_are_refused(tmp_path, capsys):
    from app.cli import main
    from app.studio import CACHE_SWEEP, build_studio

    args = build_parser().parse_args(["--projects-dir", str(tmp_path), "--device", "cpu", "--no-toy"])
    assert build_studio(build_engines(args)).delete_cache == CACHE_SWEEP
    for flag, value in (("--concurrency", "0"), ("--session-timeout", "-1"), ("--max-seconds", "nan")):
        with pytest.raises(SystemExit) as exit_info:
            main([flag, value, "--projects-dir", str(tmp_path)])
        assert exit_info.value.code == 2 and f"{flag} must be a positive number" in capsys.readouterr().err


def test_a_layer_from_another_projects_masks(tracked, tmp_path):
    engines, session = tracked
    other = SessionStore().get("other-video")
    from mvideo_core.video_io import write_video

    video_step.load_video(engines, other, write_video(tmp_path / "second.mp4", _frames()[::-1].copy(), 8.0))
    other.candidates = [{"box": [60, 28, 110, 72], "score": 0.9, "label": "square", "frame": 0}]
    masks_step.add_candidates(engines, other, masks_step.candidate_choices(other))
    masks_step.propagate(engines, other)
    edit_step.start_edit(engines, session, reset=True)
    recipe = layers.add_layer_from_project(engines, session, other.project.project_id)
    assert len(recipe["layers"]) == 2
    np.testing.assert_array_equal(edit_step.edited_masks(engines, session).masks[1], other.masks.masks[0])
    empty = SessionStore().get("empty")
    video_step.load_video(engines, empty, write_video(tmp_path / "third.mp4", _frames(), 8.0))
    with pytest.raises(StudioError, match="has no extracted masks yet"):
        layers.add_layer_from_project(engines, session, empty.project.project_id)


def test_without_weights_the_shipped_toy_model_is_offered_and_labelled(tmp_path, monkeypatch):
    import app.engines as engines_module

    class Toy:
        pass

    monkeypatch.setattr(engines_module, "_toy_engine", lambda settings, folder: Toy())
    args = build_parser().parse_args(["--projects-dir", str(tmp_path)])
    pipe, status = build_generator(args, settings_from_args(args))
    assert isinstance(pipe, Toy)
    assert status.startswith("Toy MVideo") and "--base-model" in status and "--mvideo-weights" in status
    args = build_parser().parse_args(["--projects-dir", str(tmp_path), "--no-toy", "--device", "cpu"])
    assert build_generator(args, settings_from_args(args))[0] is None


def test_the_shipped_toy_records_the_base_model_folder_it_was_loaded_from(tmp_path):
    """generation.json named runs/toy-v6/base_model (where the toy was trained, absent from the repository)."""
    from app.engines import _toy_engine
    from mvideo_core.weights import model_identity

    args = build_parser().parse_args(["--projects-dir", str(tmp_path)])
    settings = settings_from_args(args)
    engine = _toy_engine(settings, Path(__file__).resolve().parents[1] / "assets" / "toy")
    assert settings.model_size == engine.spec.default_size == (64, 96)  # the studio takes the engine's clip shape
    assert engine.identity["base_model"] == engine.metadata["base_model"]
    meta = engine.metadata
    base = Path(meta["base_model_source"])
    assert (base / "model_index.json").is_file() and base.parent.name == "toy"
    assert meta["base_model"] == model_identity(base) and meta["base_model"].startswith("base_model@sha256:")
    assert meta["trained_on"] == "runs/toy-v6/base_model"


def test_detect_offers_at_most_ten_candidates_best_first(tracked):
    engines, session = tracked

    class Many:
        def detect(self, frame, phrases):
            scores = np.linspace(0.1, 0.9, 30)
            boxes = np.tile([10.0, 10.0, 40.0, 40.0], (30, 1))
            return Detections(boxes, scores, [f"thing{i}" for i in range(30)])

    engines.grounder = Many()
    _, choices = masks_step.detect(engines, session, "thing", 0)
    assert len(choices) == masks_step.MAX_CANDIDATES
    assert choices[0] == "1: thing29 (0.90)" and choices[-1].startswith("10: thing20")
