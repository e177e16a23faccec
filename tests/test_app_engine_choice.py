"""The Generate tab's engine choice without a browser: which engines are offered and why not, VACE generating through
the studio's job path (per-object masks, stop and resume, its engine in every record), one job pool per engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli import build_parser
from app.engines import Engines, build_choices, build_tracker, build_vace, settings_from_args
from app.jobs import JobRunner
from app.sessions import SessionStore
from app.steps import generate as generate_step
from app.steps import video as video_step
from app.steps.common import StudioError
from mvideo_core.masks import MaskSet
from tests.test_app_adapters import H, T, W, _frames

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models contend badly on two busy threads


@pytest.fixture(scope="module")
def tiny_choices(one_torch_thread):
    """`--tiny-random`: the tiny MVideo and the tiny VACE, each through its production loader, built once."""
    args = build_parser().parse_args(["--tiny-random"])
    settings = settings_from_args(args)
    return build_choices(args, settings), settings


def _engines(tmp_path, tiny_choices) -> Engines:
    args = build_parser().parse_args(["--tiny-random", "--projects-dir", str(tmp_path / "projects")])
    settings = settings_from_args(args)
    settings.work_size = (H, W)
    engines = Engines(settings, choices=tiny_choices[0])
    engines.tracker, engines.tracker_status = build_tracker(args, settings)
    engines.generator = engines.choice().generator
    return engines


def test_tiny_random_offers_both_engines_each_saying_what_it_is(tiny_choices):
    choices, settings = tiny_choices
    engines = Engines(settings, choices=choices)
    assert [c.name for c in engines.offered()] == ["mvideo", "vace"] and engines.choice().name == "mvideo"
    mvideo, vace = choices["mvideo"], choices["vace"]
    assert mvideo.label.startswith("MVideo: the paper's method, needs trained weights") and "noise" in mvideo.label
    assert vace.label.startswith("VACE (Wan2.1): public weights, layout control") and "noise" in vace.label
    assert vace.describe() == "makes 96x64 at 16 fps in 4 s clips (81 frames, 17 shared with the clip before)"
    assert mvideo.describe() == "makes 96x64 at 8 fps in 4 s clips (33 frames, 1 shared with the clip before)"
    assert (vace.default_steps, vace.default_guidance, vace.noise) == (2, 5.0, True)
    assert mvideo.takes_mask_guidance and not vace.takes_mask_guidance
    assert settings.model_fps == 8.0  # the studio's own fps follows the default engine


def test_vace_is_offered_only_where_its_weights_are_found(tmp_path, monkeypatch):
    from mvideo_core.tiny_wan import save_tiny_vace_model

    missing = tmp_path / "no-such-vace"
    args = build_parser().parse_args(["--no-toy", "--device", "cpu", "--vace-model", str(missing)])
    engine, status = build_vace(args, settings_from_args(args))
    assert engine is None
    for needle in (str(missing), "--vace-model", "MVIDEO_VACE_MODEL", "Wan-AI/Wan2.1-VACE-1.3B-diffusers"):
        assert needle in status, (needle, status)
    assert "nothing is downloaded" in status and "--tiny-random-vace" in status

    # Without a flag: the hub id, found only in the hub cache (an empty one here).
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    args = build_parser().parse_args(["--device", "cpu"])
    assert build_vace(args, settings_from_args(args))[0] is None

    folder = save_tiny_vace_model(tmp_path / "vace")
    monkeypatch.setenv("MVIDEO_VACE_MODEL", str(folder))  # as a Space sets it
    args = build_parser().parse_args(["--device", "cpu"])
    engine, status = build_vace(args, settings_from_args(args))
    assert engine is not None and engine.identity == {"engine": "vace", "base_model": str(folder)}
    assert status == f"Wan2.1-VACE from {folder} (cpu)"
    args = build_parser().parse_args(["--device", "cpu", "--no-vace", "--tiny-random-vace"])
    assert build_vace(args, settings_from_args(args)) == (None, "off (--no-vace)")
    args = build_parser().parse_args([])
    settings = settings_from_args(args)
    if settings.device == "cpu":  # found, but no GPU and no forced device: said, not loaded
        engine, status = build_vace(args, settings)
        assert engine is None and "no CUDA GPU" in status and "--device cpu" in status


def test_a_missing_or_unknown_engine_is_explained_before_anything_runs(tmp_path):
    args = build_parser().parse_args(["--projects-dir", str(tmp_path), "--device", "cpu", "--no-toy"])
    args.vace_model = str(tmp_path / "nowhere")
    settings = settings_from_args(args)
    engines = Engines(settings, choices=build_choices(args, settings))
    assert engines.offered() == []
    with pytest.raises(
        StudioError, match="VACE \\(Wan2.1\\) is unavailable: no Wan2.1-VACE weights found .*--vace-model"
    ):
        generate_step.check_generation(engines, "a dog", engine="vace")
    with pytest.raises(
        StudioError, match="--base-model .*--mvideo-weights.* VACE \\(Wan2.1\\): no Wan2.1-VACE weights"
    ):
        generate_step.check_generation(engines, "a dog")  # nothing offered: what each engine lacks
    with pytest.raises(StudioError, match="^MVideo is unavailable: MVideo weights are missing: pass --mvideo-weights"):
        generate_step.check_generation(engines, "a dog", engine="mvideo")
    with pytest.raises(StudioError, match="there is no 'sora' engine in this studio; choose one of: none"):
        generate_step.check_generation(engines, "a dog", engine="sora")


def test_vace_in_the_studio_draws_each_object_stops_resumes_and_records_its_engine(tmp_path, tiny_choices):
    from mvideo_core.video_io import probe_video, write_video

    engines = _engines(tmp_path, tiny_choices)
    session = SessionStore().get("v")
    video_step.load_video(engines, session, write_video(tmp_path / "walk.mp4", _frames(), 8.0))
    objects = np.zeros((2, T, H, W), bool)
    objects[0, :, 30:70, 20:56] = True  # a square on the left, a bar on the right
    objects[1, :, 10:40, 100:130] = True
    session.masks = MaskSet(objects, fps=8.0)

    with pytest.raises(StudioError, match="mask guidance is MVideo's .* vace has none: leave it at 1"):
        generate_step.check_generation(engines, "a dog", seconds=8, mask_guidance=2, engine="vace")
    defaults = generate_step.check_generation(engines, "a dog and a bird", "", 8, None, None, 5, engine="vace")
    assert (defaults.engine, defaults.steps, defaults.guidance) == ("vace", 2, 5.0)  # the engine's defaults
    form = generate_step.check_generation(engines, "a dog and a bird", "", 8, 1, 1.0, 5, engine="vace")
    plan = generate_step.plan_generation(engines, session, form)
    mvideo_form = generate_step.check_generation(engines, "a dog and a bird", "", 8, 2, 5.0, 5)
    assert generate_step.plan_generation(engines, session, mvideo_form).out_dir != plan.out_dir
    generate_step.plan_generation(engines, session, form)  # the chosen engine is the project's again

    vace = engines.choice("vace").generator
    seen = []
    prepare = type(vace).prepare

    def spy(masks, settings, **kwargs):
        prepared = prepare(vace, masks, settings, **kwargs)
        seen.append(prepared.objects.shape)
        return prepared

    vace.prepare = spy
    stop = []
    try:
        updates = []
        for update in generate_step.run_generation(engines, vace, plan, lambda: bool(stop)):
            updates.append(update)
            if update.clip:
                stop.append(True)  # Stop pressed once the first clip is out
        assert updates[-1].state == "stopped" and [Path(u.clip).name for u in updates if u.clip] == ["clip_000.mp4"]
        assert session.project.meta()["last_generation"]["state"] == "stopped"
        stop.clear()
        again = list(generate_step.run_generation(engines, vace, plan, lambda: False))
    finally:
        del vace.prepare
    assert seen[0] == (2, 129, 64, 96)  # both objects kept apart (each its own colour); 65 + 64 frames at 16 fps
    assert "(resumed from disk)" in next(u.status for u in again if u.clip and u.clip.endswith("clip_000.mp4"))
    done = again[-1]
    assert done.state == "done" and "Done: 2 clips, 129 frames at 16 fps (tiny random model: NOISE)" in done.status
    record = json.loads(Path(done.record).read_text())
    assert record["settings"]["engine"] == "vace" and record["settings"]["base_model"] == "tiny-random-vace"
    assert record["settings"]["masks_sha1"] is not None
    meta = session.project.meta()
    assert meta["generation"]["engine"] == "vace"  # reopening chooses it again
    assert meta["last_generation"] == {**meta["last_generation"], "engine": "vace", "state": "done"}
    info = probe_video(done.final)
    assert (info.num_frames, info.fps, info.width, info.height) == (129, 16.0, 96, 64)


def test_the_default_engine_gets_the_same_masks_as_before_engines_were_chosen(tmp_path, tiny_choices):
    """MVideo is handed the objects now; it makes of them exactly the union the studio used to hand it."""
    engines = _engines(tmp_path, tiny_choices)
    session = SessionStore().get("m")
    objects = np.zeros((2, T, H, W), bool)
    objects[0, :, 30:70, 20:56] = True
    objects[1, :, 10:40, 100:130] = True
    session.masks = MaskSet(objects, fps=8.0)
    form = generate_step.check_generation(engines, "a dog", "", 8, 1, 6.0, 0, mask_policy="loop")
    plan = generate_step.plan_generation(engines, session, form)
    settings = form.generation_settings(plan.seconds, (64, 96), masked=True)
    prepared = engines.choice().generator.prepare(plan.objects, settings)
    np.testing.assert_array_equal(prepared.masks, plan.masks)


class _Named:
    def __init__(self, name: str) -> None:
        self.name = name


def test_jobs_run_on_the_chosen_engines_pool_and_at_most_workers_at_once():
    import threading

    release = threading.Event()
    ran: list[str] = []

    def work(generator, job):
        ran.append(generator.name)
        if generator.name == "vace-0":
            release.wait(10)
        yield from ()

    runner = JobRunner({"mvideo": [_Named("mvideo-0")], "vace": [_Named("vace-0")]})
    first = runner.submit("p1", Path("a"), work, engine="vace")
    second = runner.submit("p2", Path("b"), work, engine="mvideo")  # one worker: waits for the first job
    waiting = next(second.follow())
    assert waiting.status.startswith("Waiting for a free worker") and ran == ["vace-0"]
    release.set()
    list(first.follow()), list(second.follow())
    assert ran == ["vace-0", "mvideo-0"] and (first.engine, second.engine) == ("vace", "mvideo")
    with pytest.raises(ValueError, match="the sora engine is not loaded in this studio; choose one of mvideo, vace"):
        runner.submit("p3", Path("c"), work, engine="sora")


def test_a_studio_built_with_one_generator_offers_that_engine_alone(tmp_path, tiny_choices):
    engines = Engines(settings_from_args(build_parser().parse_args(["--tiny-random"])))
    engines.generator = tiny_choices[0]["mvideo"].generator
    assert [c.name for c in engines.offered()] == ["mvideo"] and engines.choice(
        "mvideo"
    ).generator is engines.generator
    with pytest.raises(StudioError, match="there is no 'vace' engine in this studio; choose one of: mvideo"):
        generate_step.check_generation(engines, "a dog", engine="vace")
