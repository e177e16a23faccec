"""Generation under hostile inputs and faults (issue 26.5, 26.6, 26.8): numbers refused by name before anything
loads, lengths bounded before allocating, resume that verifies what it lists, no litter in --out or /tmp."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

import numpy as np
import pytest
from harness import REPO, assert_clear_error, python_module, run_measured

from mvideo_core.engines import MVideoEngine
from mvideo_core.generate import main as generate_main
from mvideo_core.long_video import STATE_DIR, generate_long_video
from mvideo_core.masks import MaskSet
from mvideo_core.tiny import save_tiny_base_model, tiny_pipeline
from mvideo_core.video_io import read_video

# A child that imports torch, diffusers and transformers and loads the tiny model peaks near 700 MB; the length
# repro allocated until the machine killed it (22 GB seen).
MAX_RSS_MB = 1500
FAST = {"num_inference_steps": 1, "guidance_scale": 1.0, "progress": False}


@pytest.fixture(scope="module")
def engine():
    return MVideoEngine(tiny_pipeline("2b"))


@pytest.fixture(scope="module")
def masks():
    m = np.zeros((1, 65, 48, 72), dtype=bool)
    for t in range(65):
        m[0, t, 10:30, t % 40 : t % 40 + 20] = True
    return MaskSet(m, fps=8.0)


def _killed_after_two_clips(engine, out, masks=None):
    """An 8 s run stopped after its two clips, before final.mp4: both listed, their states on disk."""
    run = generate_long_video(engine, "a dog", out_dir=out, seconds=8, masks=masks, **FAST)
    first = [next(run), next(run)]
    run.close()
    assert not (out / "final.mp4").exists()
    return first


def _rerun(engine, out, masks=None):
    return list(generate_long_video(engine, "a dog", out_dir=out, seconds=8, masks=masks, **FAST))


# -- numbers and lengths -------------------------------------------------------------------------------------------


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--guidance", "inf"], "--guidance has to be a finite number in 0..30"),  # was: exit 0, a black video
        (["--guidance", "nan"], "--guidance has to be a finite number in 0..30"),  # was: exit 0, refused its rerun
        (["--height", "0"], "--height has to be a positive number of pixels"),  # was: silently the default
        (["--width", "-16"], "--width has to be a positive number of pixels"),
        (["--steps", "0"], "--steps has to be a whole number in 1..1000"),
        (["--seed", "-3"], "--seed has to be a whole number in 0.."),
        (["--seconds", "nan"], "--seconds has to be a positive number of seconds"),
        (["--mask-guidance", "0.5"], "--mask-guidance has to be a finite number in 1..10"),
        (["--mask-guidance", "nan"], "--mask-guidance has to be a finite number in 1..10"),
        (["--mask-guidance", "inf"], "--mask-guidance has to be a finite number in 1..10"),
        (["--mask-guidance", "2"], "give --masks too"),
    ],
)
def test_a_bad_number_is_refused_by_its_flag_before_anything_loads(tmp_path, capsys, extra, message):
    assert generate_main(["--prompt", "a dog", "--out", str(tmp_path / "out"), "--tiny-random", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing loaded, nothing written


@pytest.mark.bad_input
def test_a_billion_seconds_is_refused_before_allocating(tmp_path):
    out = tmp_path / "out"
    argv = python_module("mvideo_core.generate", "--prompt", "a dog", "--out", out, "--tiny-random")
    run = run_measured([*argv, "--seconds", "1000000000"])
    assert_clear_error(
        run, "--seconds is too long", "8000000001 frames", "3600 frames (--max-frames)", code=2, max_rss_mb=MAX_RSS_MB
    )
    assert not out.exists()


# -- resume verifies what it lists ---------------------------------------------------------------------------------


@pytest.mark.bad_input
def test_a_truncated_listed_state_is_made_again_not_a_bad_zip_forever(engine, masks, tmp_path):
    killed = _killed_after_two_clips(engine, tmp_path, masks)
    state = tmp_path / STATE_DIR / "clip_001.npz"
    state.write_bytes(state.read_bytes()[:100])  # torn
    first, again = _rerun(engine, tmp_path, masks), _rerun(engine, tmp_path, masks)
    assert [r.resumed for r in first[:-1]] == [True, False]  # clip 1 made again (it used to be BadZipFile, always)
    assert [r.resumed for r in again[:-1]] == [True, True]  # and the next rerun finds the finished video
    assert np.array_equal(first[1].frames, killed[1].frames) and again[-1].num_frames == 65


@pytest.mark.bad_input
def test_a_state_that_fails_its_checksum_is_made_again_with_every_clip_after_it(engine, tmp_path):
    killed = _killed_after_two_clips(engine, tmp_path)
    np.savez_compressed(tmp_path / STATE_DIR / "clip_000.npz", frames=np.zeros((33, 64, 96, 3), np.uint8))
    again = _rerun(engine, tmp_path)
    assert [r.resumed for r in again[:-1]] == [False, False]  # a valid file with other frames: caught
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(killed, again))


@pytest.mark.bad_input
def test_a_truncated_listed_clip_video_is_written_again_not_kept(engine, tmp_path):
    killed = _killed_after_two_clips(engine, tmp_path)
    clip = tmp_path / "clip_001.mp4"
    clip.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])  # torn: it used to be kept as done
    again = _rerun(engine, tmp_path)
    assert [r.resumed for r in again[:-1]] == [True, True]  # written again from the exact frames, not remade
    assert read_video(clip).num_frames == 33 and np.array_equal(again[1].frames, killed[1].frames)


def test_states_are_pruned_once_the_final_video_is_written(engine, tmp_path):
    _killed_after_two_clips(engine, tmp_path)
    assert len(list((tmp_path / STATE_DIR).glob("*.npz"))) == 2  # kept while resume needs them
    done = _rerun(engine, tmp_path)
    assert not (tmp_path / STATE_DIR).exists() and done[-1].path.is_file()
    record = json.loads((tmp_path / "generation.json").read_text())
    assert all(len(c["frames_sha1"]) == 40 for c in record["clips"])
    final = tmp_path / "final.mp4"
    final.write_bytes(final.read_bytes()[:2000])  # torn after pruning: the exact frames are gone, so made again
    again = _rerun(engine, tmp_path)
    assert [r.resumed for r in again[:-1]] == [False, False] and read_video(final).num_frames == 65


# -- a stable identity for the base model --------------------------------------------------------------------------


def test_a_copied_base_folder_and_an_old_path_record_still_resume(tmp_path):
    base = save_tiny_base_model(tmp_path / "a" / "tiny", "2b")
    engine = MVideoEngine.from_pretrained(base, require_weights=False)
    list(generate_long_video(engine, "a dog", out_dir=tmp_path / "o", seconds=4, **FAST))
    record = json.loads((tmp_path / "o" / "generation.json").read_text())
    assert record["settings"]["base_model"].startswith("tiny@sha256:")
    record["settings"]["base_model"] = str(base)  # as records were written before: the path it was loaded from
    (tmp_path / "o" / "generation.json").write_text(json.dumps(record))
    copy = shutil.copytree(base, tmp_path / "elsewhere" / "tiny")
    moved = MVideoEngine.from_pretrained(copy, require_weights=False)
    again = list(generate_long_video(moved, "a dog", out_dir=tmp_path / "o", seconds=4, **FAST))
    assert again[0].resumed


@pytest.mark.bad_input
def test_tiny_random_leaves_nothing_in_out_or_tmp_after_sigterm(tmp_path):
    scratch, out = tmp_path / "tmp", tmp_path / "out"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    argv = python_module("mvideo_core.generate", "--prompt", "a dog", "--out", out, "--tiny-random", "--seconds", "8")
    proc = subprocess.Popen([*map(str, argv), "--steps", "3"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:  # stop it mid-run, after its first clip
        if line.startswith("clip 1/"):
            proc.send_signal(signal.SIGTERM)
            break
    proc.wait()
    proc.stdout.close()
    assert list(scratch.iterdir()) == []  # no /tmp/mvideo-tiny-* left behind
    names = {p.name for p in out.iterdir()}  # no .tiny-base: only what the generation itself writes
    assert (
        {"clip_000.mp4", "generation.json"} <= names <= {".state", "clip_000.mp4", "clip_001.mp4", "generation.json"}
    )


def test_the_studio_tiny_random_model_keeps_its_identity_across_restarts(tmp_path):
    from app.cli import build_parser
    from app.engines import build_generator, settings_from_args

    def start_studio():  # what `python app.py --tiny-random` builds at each start
        args = build_parser().parse_args(["--tiny-random", "--projects-dir", str(tmp_path / "projects")])
        return build_generator(args, settings_from_args(args))[0]

    first, second = start_studio(), start_studio()
    assert (
        first.identity
        == second.identity
        == {"engine": "mvideo", "base_model": "tiny-random-2b", "mvideo_weights": None}
    )
    list(generate_long_video(first, "a dog", out_dir=tmp_path / "o", seconds=4, **FAST))
    again = list(generate_long_video(second, "a dog", out_dir=tmp_path / "o", seconds=4, **FAST))
    assert again[0].resumed  # was: refused forever after a restart ("different base_model": a fresh temp folder)
