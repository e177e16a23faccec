"""Recipes and timelines bound what they allocate before allocating (issue 26): the repros, refused in a child."""

from __future__ import annotations

import json

import numpy as np
import pytest
from harness import assert_clear_error, assert_refused, python_module, run_measured

from editing import timeline
from editing.recipe import RecipeError, validate
from editing.transforms import EditError
from mvideo_core.masks import MaskSet, save_masks

# A child that imports numpy, cv2, PyAV and the editing package peaks near 150 MB; the repros asked for 5+ GB.
MAX_RSS_MB = 400


def layer(**fields) -> dict:
    return {"source": "video", **fields}


def recipe(*layers: dict, width: int = 720, height: int = 480, num_frames: int = 33) -> dict:
    target = {"width": width, "height": height, "fps": 8, "num_frames": num_frames}
    return {"version": 1, "target": target, "layers": list(layers) or [layer()]}


@pytest.fixture
def render_cli(tmp_path):
    """Render a recipe with the CLI in a measured child, on a small 33-frame source."""
    masks = np.zeros((1, 33, 48, 72), dtype=bool)
    masks[:, :, 10:30, 20:40] = True
    source = save_masks(MaskSet(masks, 8.0), tmp_path / "video.npz")

    def run(recipe: dict, *flags: str):
        path = tmp_path / "recipe.json"
        path.write_text(json.dumps(recipe, separators=(",", ":")))
        argv = python_module("editing", "render", path, "--source", f"video={source}", "--out", tmp_path / "o.npz")
        result = run_measured([*argv, *flags])
        assert not (tmp_path / "o.npz").exists(), result
        return result

    return run


@pytest.mark.bad_input
def test_a_tiny_recipe_slowing_a_layer_ten_million_times_is_refused_before_allocating(render_cli):
    # The repro: ~300 bytes of JSON with speed 1e-7 rendered at 5.1-5.8 GB.
    text = json.dumps(recipe(layer(speed=1e-7)), separators=(",", ":"))
    assert len(text) < 320
    run = render_cli(recipe(layer(speed=1e-7)))
    assert_clear_error(run, "layers[0].speed", "3.3e+08 frames", "1,000,000 frames", code=2, max_rss_mb=MAX_RSS_MB)


@pytest.mark.bad_input
def test_loops_of_a_slowed_layer_are_refused_before_allocating(render_cli):
    run = render_cli(recipe(layer(speed=0.01, timeline=[{"op": "loop", "times": 10_000}])))
    assert_clear_error(run, "timeline[0] (loop)", "3.3e+07 frames", "1,000,000", code=2, max_rss_mb=MAX_RSS_MB)


@pytest.mark.bad_input
def test_pingpong_and_concat_past_the_limit_are_refused(render_cli):
    run = render_cli(recipe(layer(speed=0.05, timeline=[{"op": "pingpong", "times": 10_000}])))
    assert_clear_error(run, "timeline[0] (pingpong)", "over the limit", code=2, max_rss_mb=MAX_RSS_MB)
    ops = [{"op": "loop", "times": 10_000}, {"op": "concat", "source": "video", "speed": 4e-5}]  # 330k + 825k
    run = render_cli(recipe(layer(timeline=ops)))
    assert_clear_error(run, "timeline[1] (concat)", "1.155e+06 frames", code=2, max_rss_mb=MAX_RSS_MB)


@pytest.mark.bad_input
def test_a_huge_target_is_refused_with_its_size_and_the_memory_limit(render_cli):
    run = render_cli(recipe(width=8192, height=8192, num_frames=100))
    assert_clear_error(
        run, "6.25 GiB", "100 frames of 8192x8192", "2 GiB", "--max-memory-gb", code=2, max_rss_mb=MAX_RSS_MB
    )


@pytest.mark.bad_input
def test_many_layers_count_against_the_budget_and_the_flag_moves_it(render_cli):
    run = render_cli(recipe(*[layer(id=i + 1) for i in range(400)]))
    assert_clear_error(run, "400 layer(s)", "4.25 GiB", "--max-memory-gb", code=2, max_rss_mb=MAX_RSS_MB)
    run = render_cli(recipe(), "--max-memory-gb", "0.001")
    assert_clear_error(run, "10.9 MiB", "1.02 MiB", code=2, max_rss_mb=MAX_RSS_MB)


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "call",
    [
        lambda: timeline.resample_indices(33, 8.0, 8.0, 1e-300),
        lambda: timeline.loop_indices(1000, times=10_000),
        lambda: timeline.pingpong_indices(1000, num_frames=10**12),
        lambda: timeline.retime_indices(33, 240.0, 1e9),
    ],
    ids=["speed", "loop", "pingpong", "retime"],
)
def test_timeline_index_functions_refuse_huge_outputs_in_process(call):
    with pytest.raises(EditError) as err:
        call()
    assert_refused(err.value, "frames", "over the limit of 1,000,000 frames")


@pytest.mark.bad_input
def test_validate_refuses_a_huge_target_without_sources():
    with pytest.raises(RecipeError) as err:
        validate(recipe(width=8000, height=8000, num_frames=80))
    assert_refused(err.value, "4.77 GiB", "80 frames of 8000x8000", "over the memory limit of 2 GiB")
