"""Hostile command lines for extract and evaluate, in process: every bad number is refused at the edge by argparse
(exit 2, the flag named), every bad file or folder with one `error:` line and a non-zero exit, never a traceback."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from makers import coco_json, h264_video

from mvideo_core import evaluate, extract
from mvideo_core.masks import MaskSet, save_masks

pytestmark = pytest.mark.bad_input


def run_cli(main, argv, capsys) -> tuple[int, str]:
    """(exit code, stdout + stderr) of `main(argv)`; an exception other than SystemExit fails the test."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
        if isinstance(code, str):
            print(code, file=sys.stderr)
            code = 1
    out, err = capsys.readouterr()
    return code, out + err


def assert_refused(code: int, output: str, *words: str, exit_code: int | None = None) -> None:
    assert code not in (0, None), f"accepted:\n{output}"
    if exit_code is not None:
        assert code == exit_code, f"exit {code}, expected {exit_code}:\n{output}"
    assert "Traceback" not in output
    for word in words:
        assert word.lower() in output.lower(), f"{output!r} does not name {word!r}"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return h264_video(tmp_path_factory.mktemp("cli") / "clip.mp4", 32, 24, frames=4, noise=False)


# -- extract -----------------------------------------------------------------------------------------------------

NUMBER_FLAGS = {
    "fps-nan": ["--fps", "nan"],
    "fps-inf": ["--fps", "inf"],
    "fps-zero": ["--fps", "0"],
    "fps-negative": ["--fps", "-1"],
    "fps-1e9": ["--fps", "1e9"],
    "fps-text": ["--fps", "fast"],
    "max-seconds-nan": ["--max-seconds", "nan"],
    "max-seconds-negative": ["--max-seconds", "-1"],
    "max-seconds-zero": ["--max-seconds", "0"],
    "max-seconds-1e10": ["--max-seconds", "1e10"],
    "box-threshold-2": ["--box-threshold", "2"],
    "box-threshold-negative": ["--box-threshold", "-0.1"],
    "box-threshold-nan": ["--box-threshold", "nan"],
    "text-threshold-1.5": ["--text-threshold", "1.5"],
    "text-frame-negative": ["--text-frame", "-1"],
    "text-frame-fraction": ["--text-frame", "1.5"],
    "text-frame-text": ["--text-frame", "first"],
    "format-gif": ["--format", "gif"],
    "max-frames-zero": ["--max-frames", "0"],
    "max-pixels-half": ["--max-pixels", "10x"],
    "max-memory-inf": ["--max-memory-gb", "inf"],
}


@pytest.mark.parametrize("flags", list(NUMBER_FLAGS.values()), ids=list(NUMBER_FLAGS))
def test_extract_bad_number_is_refused_by_argparse(tmp_path, clip, capsys, flags):
    code, output = run_cli(extract.main, [clip, "--box", "0,0,4,4@0", "--out", tmp_path / "out", *flags], capsys)
    assert_refused(code, output, flags[0], exit_code=2)
    assert not (tmp_path / "out").exists()  # refused before anything was made


EXTRACT_RUNS = {
    "no-prompt": ([], ["nothing to segment"]),
    "box-three-numbers": (["--box", "1,2,3"], ["cannot read the box"]),
    "box-text": (["--box", "a,b,c,d"], ["cannot read the box"]),
    "box-nan": (["--box", "nan,0,5,5@0"], ["cannot read the box"]),
    "box-negative-frame": (["--box", "0,0,5,5@-1"], ["cannot read the box"]),
    "box-frame-past-the-end": (["--box", "0,0,5,5@99"], ["99"]),
    "box-outside-the-frame": (["--box", "500,500,900,900@0"], ["box"]),
    "click-bad-sign": (["--click", "1,2,*"], ["cannot read the click"]),
    "click-text": (["--click", "x,y"], ["cannot read the click"]),
    "text-without-grounding-weights": (["--text", "person", "--models-dir", "{tmp}"], ["--text needs grounding dino"]),
    "sam2-without-weights": (["--box", "0,0,4,4@0", "--tracker", "sam2", "--models-dir", "{tmp}"], ["sam2"]),
    "video-too-long": (["--box", "0,0,4,4@0", "--max-seconds", "0.1"], ["over the 0.1 s limit"]),
    "video-too-many-pixels": (["--box", "0,0,4,4@0", "--max-pixels", "100"], ["--max-pixels"]),
    "video-too-many-frames": (["--box", "0,0,4,4@0", "--max-frames", "2"], ["--max-frames"]),
    "video-too-many-bytes": (["--box", "0,0,4,4@0", "--max-memory-gb", "0.001", "--fps", "1000"], ["--max-memory-gb"]),
}


@pytest.mark.parametrize("flags, words", list(EXTRACT_RUNS.values()), ids=list(EXTRACT_RUNS))
def test_extract_bad_prompt_or_limit_is_refused(tmp_path, clip, capsys, flags, words):
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    code, output = run_cli(extract.main, [clip, "--tracker", "classic", "--out", tmp_path / "out", *flags], capsys)
    assert_refused(code, output, "error:", *words, exit_code=2)


@pytest.mark.parametrize(
    "content", [b"", b"text, not video", b"\x00\x00\x00\x18ftypisom" + bytes(40)], ids=["empty", "text", "ftyp-only"]
)
def test_extract_unreadable_video_is_refused(tmp_path, capsys, content):
    video = tmp_path / "in.mp4"
    video.write_bytes(content)
    code, output = run_cli(
        extract.main, [video, "--box", "0,0,4,4@0", "--tracker", "classic", "--out", tmp_path / "out"], capsys
    )
    assert_refused(code, output, "error: cannot read", "in.mp4", exit_code=2)


def test_extract_missing_video_is_refused(tmp_path, capsys):
    code, output = run_cli(
        extract.main, [tmp_path / "no.mp4", "--box", "0,0,4,4@0", "--tracker", "classic", "--out", tmp_path], capsys
    )
    assert_refused(code, output, "no such video", exit_code=2)


@pytest.mark.parametrize("where", ["out-is-a-file", "out-under-a-file"])
def test_extract_unwritable_out_is_refused_before_the_video_is_read(tmp_path, capsys, where):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker if where == "out-is-a-file" else blocker / "out"
    code, output = run_cli(
        extract.main, [tmp_path / "no.mp4", "--box", "0,0,4,4@0", "--tracker", "classic", "--out", out], capsys
    )
    assert_refused(code, output, "--out", "not writable", exit_code=2)
    assert "no.mp4" not in output


# -- evaluate ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scored(tmp_path_factory, clip):
    """A folder with one video and its masks."""
    folder = tmp_path_factory.mktemp("scored")
    (folder / "clip.mp4").write_bytes(clip.read_bytes())
    save_masks(MaskSet(np.ones((1, 4, 24, 32), bool), 8.0), folder / "clip.npz")
    return folder


EVAL_FLAGS = {
    "fps-nan": ["--fps", "nan"],
    "fps-zero": ["--fps", "0"],
    "fps-negative": ["--fps", "-5"],
    "fps-inf": ["--fps", "inf"],
    "fps-text": ["--fps", "x"],
    "max-frames-nan": ["--max-frames", "nan"],
    "max-pixels-negative": ["--max-pixels", "-4"],
    "max-memory-text": ["--max-memory-gb", "lots"],
}


@pytest.mark.parametrize("flags", list(EVAL_FLAGS.values()), ids=list(EVAL_FLAGS))
def test_evaluate_bad_number_is_refused_by_argparse(scored, capsys, flags):
    code, output = run_cli(evaluate.main, ["--videos", scored, "--tracker", "classic", *flags], capsys)
    assert_refused(code, output, flags[0], exit_code=2)


def test_evaluate_without_inputs_is_refused(capsys):
    code, output = run_cli(evaluate.main, ["--tracker", "classic"], capsys)
    assert_refused(code, output, "--videos", exit_code=2)


def pairs_csv(tmp_path, text):
    path = tmp_path / "pairs.csv"
    path.write_text(text)
    return path


EVAL_RUNS = {
    "videos-missing": (lambda tmp, ok: ["--videos", tmp / "none"], ["is not a folder"]),
    "masks-not-a-folder": (lambda tmp, ok: ["--videos", ok, "--masks", ok / "clip.npz"], ["is not a folder"]),
    "no-pairs": (lambda tmp, ok: ["--videos", tmp], ["no (video, masks) pairs"]),
    "pairs-missing": (lambda tmp, ok: ["--pairs", tmp / "none.csv"], ["does not exist"]),
    "pairs-no-header": (lambda tmp, ok: ["--pairs", pairs_csv(tmp, "a.mp4,a.npz\n")], ["needs a header"]),
    "pairs-empty": (lambda tmp, ok: ["--pairs", pairs_csv(tmp, "video,masks\n")], ["lists no pairs"]),
    "out-is-a-folder": (lambda tmp, ok: ["--videos", ok, "--out", tmp], ["is a folder"]),
    "out-under-a-file": (lambda tmp, ok: ["--videos", ok, "--out", ok / "clip.npz" / "s.json"], ["not writable"]),
    "tracker-unknown": (lambda tmp, ok: ["--videos", ok, "--tracker", "nonsense"], ["nonsense"]),
    "tracker-sam2-without-weights": (lambda tmp, ok: ["--videos", ok, "--tracker", "sam2"], ["sam2"]),
}


@pytest.mark.parametrize("build, words", list(EVAL_RUNS.values()), ids=list(EVAL_RUNS))
def test_evaluate_bad_folder_or_file_is_refused(tmp_path, scored, capsys, build, words):
    argv = build(tmp_path, scored)
    if "--tracker" not in argv:
        argv += ["--tracker", "classic"]
    code, output = run_cli(evaluate.main, argv, capsys)
    assert_refused(code, output, "error", *words)


@pytest.mark.parametrize(
    "masks_name, write, words",
    [
        ("clip.json", lambda p: coco_json(p, 300, 3000, 3333), ["clip.json", "2.79 GiB"]),
        ("clip.npz", lambda p: p.write_bytes(b"PK\x03\x04 torn"), ["clip.npz", "not a readable"]),
        ("clip.json", lambda p: p.write_text("{"), ["clip.json", "not valid JSON"]),
    ],
    ids=["huge-coco", "torn-npz", "torn-json"],
)
def test_evaluate_reports_a_hostile_masks_file_as_not_scored(tmp_path, clip, capsys, masks_name, write, words):
    (tmp_path / "clip.mp4").write_bytes(clip.read_bytes())
    write(tmp_path / masks_name)
    code, output = run_cli(evaluate.main, ["--videos", tmp_path, "--tracker", "classic"], capsys)
    assert_refused(code, output, "clip.mp4: not scored (MaskError", *words, exit_code=1)


def test_evaluate_reports_an_unreadable_video_as_not_scored(tmp_path, scored, capsys):
    (tmp_path / "clip.mp4").write_text("not a video")
    (tmp_path / "clip.npz").write_bytes((scored / "clip.npz").read_bytes())
    code, output = run_cli(evaluate.main, ["--videos", tmp_path, "--tracker", "classic"], capsys)
    assert_refused(code, output, "clip.mp4: not scored (VideoError", exit_code=1)


# -- the other non-generation command lines ---------------------------------------------------------------------

SAMPLES_FLAGS = {
    "frames-zero": (["--frames", "0"], "--frames"),
    "frames-huge": (["--frames", "1e9"], "--frames"),
    "fps-nan": (["--fps", "nan"], "--fps"),
    "size-zero": (["--size", "0", "64"], "--size"),
    "size-huge": (["--size", "100000", "100000"], "--size"),
    "seed-negative": (["--seed", "-1"], "--seed"),
    "memory-budget": (["--frames", "3000", "--size", "2000", "2000"], "--max-memory-gb"),
    "out-under-a-file": (["--out", "{file}/samples"], "not writable"),
}


@pytest.mark.parametrize("flags, words", list(SAMPLES_FLAGS.values()), ids=list(SAMPLES_FLAGS))
def test_samples_cli_bad_input_is_refused_before_writing(tmp_path, capsys, flags, words):
    from mvideo_core import samples

    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["--out", tmp_path / "out", *(f.replace("{file}", str(blocker)) for f in flags)]
    code, output = run_cli(samples.main, argv, capsys)
    assert_refused(code, output, words, exit_code=2)
    assert not (tmp_path / "out").exists()


BUILD_FLAGS = {
    "fps-nan": ["--fps", "nan"],
    "min-seconds-negative": ["--min-seconds", "-1"],
    "max-seconds-nan": ["--max-seconds", "nan"],
    "box-threshold-5": ["--box-threshold", "5"],
    "scene-threshold-nan": ["--scene-threshold", "nan"],
    "max-objects-zero": ["--max-objects", "0"],
    "num-shards-zero": ["--num-shards", "0"],
    "shard-index-negative": ["--shard-index", "-1"],
}


@pytest.mark.parametrize("flags", list(BUILD_FLAGS.values()), ids=list(BUILD_FLAGS))
def test_build_dataset_bad_number_is_refused_by_argparse(tmp_path, clip, capsys, flags):
    from mvideo_core import build_dataset

    code, output = run_cli(build_dataset.main, [clip.parent, tmp_path / "ds", *flags], capsys)
    assert_refused(code, output, flags[0], exit_code=2)


def test_build_dataset_unwritable_out_is_refused_before_models_load(tmp_path, clip, capsys):
    from mvideo_core import build_dataset

    (clip.parent / "clip.txt").write_text("a grey square")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = [clip.parent, blocker / "ds", "--grounder", tmp_path / "no-such-model"]
    code, output = run_cli(build_dataset.main, argv, capsys)
    assert_refused(code, output, "OUT", "not writable", exit_code=2)
    assert "no-such-model" not in output  # refused before the grounder was looked for


@pytest.mark.parametrize("flags", [["--max-memory-gb", "nan"], ["--max-frames", "-1"], ["--max-pixels", "axb"]])
def test_studio_budget_flags_are_refused_by_argparse(capsys, flags):
    from app.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(flags)
    assert exit_.value.code == 2 and flags[0] in capsys.readouterr().err
