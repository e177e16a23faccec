"""`python -m editing render / convert / docs`: every mask format in and out, and one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from editing.__main__ import main
from editing.recipe import loads, render
from mvideo_core.masks import MaskSet, load_masks, save_masks

ROOT = Path(__file__).resolve().parents[1]
FORMATS = (".npz", ".zip", ".mp4", ".json")


def two_objects(t: int = 5, h: int = 24, w: int = 32) -> MaskSet:
    masks = np.zeros((2, t, h, w), dtype=bool)
    for i in range(t):
        masks[0, i, 4:12, 2 + 2 * i : 10 + 2 * i] = True
        masks[1, i, 10:20, 18:26] = True  # overlaps object 1 in the later frames
    return MaskSet(masks, 8.0, [3, 5], ["cat", "ball"])


RECIPE = {
    "version": 1,
    "target": {"width": 32, "height": 24, "fps": 8.0, "num_frames": 5},
    "layers": [
        {"id": 1, "source": "video", "object": 3, "ops": [{"op": "transform", "keys": [{"t": 0.5, "x": 2}]}]},
        {"id": 2, "source": "video", "object": 5, "z": 1, "timeline": [{"op": "reverse"}]},
    ],
}


def assert_same(a: MaskSet, b: MaskSet) -> None:
    np.testing.assert_array_equal(a.masks, b.masks)
    assert a.ids == b.ids and a.names == b.names and a.fps == b.fps


def test_convert_round_trips_through_every_mask_format(tmp_path, capsys):
    original = two_objects()
    path = save_masks(original, tmp_path / "start.npz")
    for k, suffix in enumerate([*FORMATS[1:], ".npz"]):
        out = tmp_path / f"step{k}{suffix}"
        assert main(["convert", str(path), str(out)]) == 0
        assert f"wrote {out}: 2 object(s), 5 frames of 32x24 at 8 fps" in capsys.readouterr().out
        assert_same(load_masks(out), original)
        path = out


@pytest.mark.parametrize("source_format", FORMATS)
@pytest.mark.parametrize("out_format", FORMATS)
def test_render_reads_and_writes_any_mask_format(tmp_path, source_format, out_format):
    source = two_objects()
    recipe_path = tmp_path / "recipe.json"
    recipe_path.write_text(json.dumps(RECIPE))
    src = save_masks(source, tmp_path / f"video{source_format}")
    out = tmp_path / f"edited{out_format}"
    assert main(["render", str(recipe_path), "--source", f"video={src}", "--out", str(out)]) == 0
    expected = render(RECIPE, {"video": source})
    loaded = load_masks(out)
    np.testing.assert_array_equal(loaded.masks, expected.masks)
    assert loaded.ids == [1, 2] and loaded.names == ["cat", "ball"]


def test_render_prints_warnings_and_runs_as_a_module(tmp_path):
    recipe = json.loads(json.dumps(RECIPE))
    recipe["layers"][0]["ops"][0]["keys"] = [{"t": 0.0}, {"t": 0.5, "x": 40}]
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    save_masks(two_objects(), tmp_path / "v.zip")
    result = subprocess.run(
        [sys.executable, "-m", "editing", "render", "r.json", "--source", "video=v.zip", "--out", "o.npz"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("warning: layer 1 (cat) leaves the frame in frames ")
    assert (tmp_path / "o.npz").is_file() and "wrote o.npz: 2 object(s)" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["render", "{d}/r.json", "--source", "video", "--out", "{d}/o.npz"], "--source takes NAME=MASKFILE"),
        (["render", "{d}/r.json", "--source", "video={d}/nope.npz", "--out", "{d}/o.npz"], "no such mask file"),
        (["render", "{d}/r.json", "--out", "{d}/o.npz"], "source 'video' was not given"),
        (["render", "{d}/torn.json", "--source", "video={d}/v.npz", "--out", "{d}/o.npz"], "was the file truncated"),
        (["render", "{d}/r.json", "--source", "video={d}/v.npz", "--out", "{d}/no/o.npz"], "does not exist"),
        (["render", "{d}/r.json", "--source", "video={d}/v.npz", "--out", "{d}/o.txt"], "cannot tell the mask format"),
        (["render", "{d}/r.json", "--source", "video={d}/v.npz", "--out", "{d}"], "is a folder"),
        (["convert", "{d}/torn.json", "{d}/o.npz"], "torn.json is not valid JSON"),
        (["convert", "{d}/v.npz", "{d}/o.gif"], "cannot tell the mask format"),
    ],
)
def test_bad_arguments_and_files_give_one_line_and_exit_code_2(tmp_path, capsys, args, message):
    (tmp_path / "r.json").write_text(json.dumps(RECIPE))
    (tmp_path / "torn.json").write_text(json.dumps(RECIPE)[:40])
    save_masks(two_objects(), tmp_path / "v.npz")
    assert main([a.format(d=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "o.npz").exists() and not list(tmp_path.glob(".*partial*"))


def test_docs_command_prints_the_reference(capsys):
    assert main(["docs"]) == 0
    assert "**`transform`**" in capsys.readouterr().out


# -- python -m mvideo_core.generate --recipe --------------------------------------------------------------------------
def test_generate_renders_a_recipe_and_records_it(tmp_path, capsys):
    from mvideo_core.generate import main as generate

    source = save_masks(two_objects(t=33, h=48, w=72), tmp_path / "video.zip")
    recipe = json.loads(json.dumps(RECIPE))
    recipe["target"].update(width=72, height=48, num_frames=33)
    recipe["layers"][0]["ops"] = [{"op": "path", "points": [{"t": 0, "x": 10, "y": 20}, {"t": 4, "x": 60, "y": 30}]}]
    (tmp_path / "edit.json").write_text(json.dumps(recipe))
    common = ["--prompt", "a cat", "--seconds", "4", "--steps", "1", "--tiny-random", "2b"]
    recipe_args = ["--recipe", str(tmp_path / "edit.json"), "--source", f"video={source}"]
    assert generate([*recipe_args, *common, "--out", str(tmp_path / "a")]) == 0
    record = json.loads((tmp_path / "a" / "generation.json").read_text())
    assert record["masks_from"] == {
        "recipe_file": str(tmp_path / "edit.json"),
        "recipe": loads(json.dumps(recipe)),
        "sources": {"video": str(source)},
    }
    assert (tmp_path / "a" / "final.mp4").is_file() and "clip 1/1" in capsys.readouterr().out


def test_generate_follows_the_rendered_recipe(tmp_path, monkeypatch):
    import mvideo_core.generate as gen

    source = save_masks(two_objects(), tmp_path / "video.npz")
    (tmp_path / "edit.json").write_text(json.dumps(RECIPE))
    seen = {}

    def fake_generate(engine, settings, *, masks, masks_from, **kwargs):
        seen.update(masks=masks, masks_from=masks_from)
        return iter(())

    monkeypatch.setattr(gen, "generate_long_video", fake_generate)
    args = ["--recipe", str(tmp_path / "edit.json"), "--source", f"video={source}", "--prompt", "a cat"]
    assert gen.main([*args, "--seconds", "4", "--out", str(tmp_path / "o"), "--tiny-random", "2b"]) == 0
    expected = render(RECIPE, {"video": load_masks(source)})
    np.testing.assert_array_equal(seen["masks"].masks, expected.masks)
    assert seen["masks"].ids == [1, 2] and seen["masks_from"]["sources"] == {"video": str(source)}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--masks", "{d}/video.npz"], "either as --masks or as --recipe"),
        (["--source", "video={d}/nope.npz"], "no such mask file"),
        (["--source", "other={d}/video.npz"], "source 'video' was not given; sources available: ['other']"),
        (["--source", "video"], "--source takes NAME=MASKFILE"),
    ],
)
def test_generate_refuses_a_bad_recipe_run_before_loading_a_model(tmp_path, capsys, extra, message):
    from mvideo_core.generate import main as generate

    save_masks(two_objects(), tmp_path / "video.npz")
    (tmp_path / "r.json").write_text(json.dumps(RECIPE))
    args = ["--recipe", str(tmp_path / "r.json"), *[a.format(d=tmp_path) for a in extra]]
    assert generate([*args, "--prompt", "a cat", "--out", str(tmp_path / "out"), "--tiny-random"]) == 2
    assert message in capsys.readouterr().err
    assert generate(["--source", "v=x.npz", "--prompt", "a", "--out", str(tmp_path / "o"), "--tiny-random"]) == 2
    assert "give --recipe too" in capsys.readouterr().err
