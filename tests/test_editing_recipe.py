"""Recipes: validation errors, the documented example, v0 migration, file round trip, undo/redo, rendering rules."""

import copy
import json
import re

import numpy as np
import pytest

import editing.recipe as recipe_module
from editing.recipe import (
    RecipeError,
    UndoStack,
    dumps,
    load,
    loads,
    migrate,
    recipe_from_maskset,
    render,
    save,
    validate,
)
from mvideo_core.masks import MaskSet


def blob_set(t: int = 8, h: int = 24, w: int = 32, fps: float = 8.0, k: int = 1) -> MaskSet:
    masks = np.zeros((k, t, h, w), dtype=bool)
    for j in range(k):
        for i in range(t):
            masks[j, i, 8 + j : 16 + j, 2 + 2 * i : 10 + 2 * i] = True
    return MaskSet(masks, fps)


def base_recipe(**layer) -> dict:
    return {
        "version": 1,
        "target": {"width": 32, "height": 24, "fps": 8.0, "num_frames": 8},
        "layers": [{"source": "clip", **layer}],
    }


SOURCES = {"clip": blob_set(), "pair": blob_set(k=2)}


def test_the_docstring_example_is_a_valid_recipe_that_renders():
    text = re.search(r"::\n\n(.*?)\n\nSemantics", recipe_module.__doc__, re.S).group(1)
    recipe = loads(text)
    sources = {
        "tiger.mp4": blob_set(t=48, h=240, w=360, fps=12.0),
        "dance.mp4": blob_set(t=20, h=480, w=720, fps=10.0, k=2),
    }
    out = render(recipe, sources)
    assert out.masks.shape == (2, 33, 480, 720) and out.ids == [1, 2] and out.names == ["tiger", "dancer"]
    assert out.meta["recipe_version"] == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["layers"][0].update(ops=[{"op": "zom"}]), r"layers\[0\]\.ops\[0\]: unknown op 'zom'.*transform"),
        (lambda r: r["layers"][0].update(ops=[{"op": "trim"}]), r"belongs in the layer's 'timeline' list"),
        (lambda r: r["layers"][0].update(timeline=[{"op": "dilate", "radius": 1}]), r"belongs in the layer's 'ops'"),
        (
            lambda r: r["layers"][0].update(ops=[{"op": "transform", "keys": [{"t": 0}, {"t": 1.5}]}]),
            r"keys\[1\]\.t = 1\.5 s is outside the target's 0\.\.1 s",
        ),
        (lambda r: r["layers"][0].update(ops=[{"op": "transform"}]), "missing parameter 'keys'"),
        (lambda r: r["layers"][0].update(ops=[{"op": "dilate", "radius": 1.5}]), r"radius must be an integer"),
        (lambda r: r["layers"][0].update(ops=[{"op": "smooth", "window": 2}]), "must be odd"),
        (lambda r: r["layers"][0].update(ops=[{"op": "terrain", "profile": "hill"}]), "profile must be one of"),
        (
            lambda r: r["layers"][0].update(ops=[{"op": "flip", "axis": "x", "angle": 3}]),
            r"unknown parameters \['angle'\]",
        ),
        (lambda r: r["layers"][0].update(timeline=[{"op": "trim", "start": 1, "end": 0.5}]), "start < end"),
        (lambda r: r["layers"][0].update(speed=-1), r"layers\[0\]\.speed must be > 0"),
        (lambda r: r["layers"][0].update(object=0), r"object must be an object id"),
        (lambda r: r["layers"][0].update(colour="red"), r"unknown fields \['colour'\]"),
        (lambda r: r["layers"][0].pop("source"), "has no 'source'"),
        (lambda r: r["layers"].append({"source": "clip", "id": 1}), "layer ids must be unique"),
        (lambda r: r.update(layers=[]), "non-empty list"),
        (lambda r: r["target"].pop("fps"), r"target\.fps is missing"),
        (lambda r: r["target"].update(width=0), r"target\.width must be >= 1"),
        (lambda r: r["target"].update(height="480"), r"target\.height must be an integer"),
        (lambda r: r.update(version=7), "unsupported recipe version 7"),
        (
            lambda r: r["target"].update(width=8192, height=8192, num_frames=100),
            r"output \(1 layer\(s\) on a 8192x8192 target\) needs 6.25 GiB .*over the memory limit of 2 GiB",
        ),
        (lambda r: r.update(occlusion="some"), "occlusion must be one of"),
        (lambda r: r.update(extra=1), "unknown top-level fields"),
    ],
)
def test_invalid_recipes_raise_errors_that_say_where_and_why(change, message):
    recipe = base_recipe()
    change(recipe)
    with pytest.raises(RecipeError, match=message):
        validate(recipe)


@pytest.mark.parametrize(
    ("recipe", "sources", "message"),
    [
        (
            base_recipe(source="missing"),
            SOURCES,
            r"source 'missing' was not given; sources available: \['clip', 'pair'\]",
        ),
        (base_recipe(object=3), SOURCES, r"source 'clip' has no object 3; its objects are \[1\]"),
        (base_recipe(source="pair"), SOURCES, r"has objects \[1, 2\]; say which with 'object'"),
        (base_recipe(timeline=[{"op": "trim", "start": 5.0}]), SOURCES, r"timeline\[0\] \(trim\): .*keeps no frame"),
        (base_recipe(timeline=[{"op": "concat", "source": "nope"}]), SOURCES, r"timeline\[0\] \(concat\).*'nope'"),
        (base_recipe(), {"clip": np.zeros((1, 8, 24, 32), bool)}, "must be a MaskSet"),
        (base_recipe(), [("clip", SOURCES["clip"])], "sources must be a dict"),
    ],
)
def test_render_errors_name_the_missing_or_bad_source(recipe, sources, message):
    with pytest.raises(RecipeError, match=message):
        render(recipe, sources)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ('{"version": 1, "target": ', "not valid JSON"), ("[1, 2]", "must be a JSON object")],
)
def test_corrupt_or_empty_json_is_refused(text, message):
    with pytest.raises(RecipeError, match=message):
        loads(text)


def test_recipe_files_round_trip_and_unreadable_files_are_reported(tmp_path):
    recipe = base_recipe(ops=[{"op": "transform", "keys": [{"t": 0, "scale": 1.5}]}])
    path = save(recipe, tmp_path / "edit.json")
    assert load(path) == validate(recipe)
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(RecipeError, match="cannot read recipe file"):
        load(tmp_path / "bad.json")
    with pytest.raises(RecipeError, match="cannot read recipe file"):
        load(tmp_path / "absent.json")


V0 = {
    "size": [24, 32],
    "fps": 8.0,
    "num_frames": 8,
    "layers": [
        {
            "source": "clip",
            "object": 1,
            "offset_frames": 2,
            "ops": [
                {"op": "reverse"},
                {"op": "affine", "anchor": "center", "keys": [{"frame": 0, "scale": 1.0}, {"frame": 4, "x": 3}]},
                {"op": "dilate", "radius": 1},
            ],
        }
    ],
}


def test_a_version_0_recipe_migrates_to_version_1_and_renders_the_same_edit():
    new = migrate(V0)
    assert new == {
        "version": 1,
        "target": {"width": 32, "height": 24, "fps": 8.0, "num_frames": 8},
        "occlusion": "full",
        "layers": [
            {
                "source": "clip",
                "object": 1,
                "start": 0.25,
                "timeline": [{"op": "reverse"}],
                "ops": [
                    {"op": "transform", "anchor": "center", "keys": [{"t": 0.0, "scale": 1.0}, {"t": 0.5, "x": 3}]},
                    {"op": "dilate", "radius": 1},
                ],
            }
        ],
    }
    np.testing.assert_array_equal(render(V0, SOURCES).masks, render(new, SOURCES).masks)
    assert loads(json.dumps(V0)) == new
    with pytest.raises(RecipeError, match="version-0 recipe needs 'size'"):
        migrate({"layers": []})


def test_undo_and_redo_walk_the_history_of_recipes():
    a, b, c = base_recipe(), base_recipe(z=1), base_recipe(z=2)
    stack = UndoStack(a)
    assert not stack.can_undo and not stack.can_redo
    stack.push(b)
    stack.push(c)
    stack.push(copy.deepcopy(c))  # unchanged: no new entry
    assert stack.undo()["layers"][0]["z"] == 1
    assert stack.undo() == validate(a) and not stack.can_undo
    assert stack.redo()["layers"][0]["z"] == 1 and stack.can_redo
    stack.push(base_recipe(z=9))  # a new edit drops the redo branch
    assert not stack.can_redo and stack.current["layers"][0]["z"] == 9
    with pytest.raises(RecipeError, match="nothing to redo"):
        stack.redo()
    b["layers"][0]["z"] = 100  # the history holds copies
    assert stack.undo()["layers"][0]["z"] == 1
    with pytest.raises(RecipeError, match="layers\\[0\\]\\.ops\\[0\\]: unknown op"):
        stack.push(base_recipe(ops=[{"op": "blur"}]))


def test_undo_history_is_bounded_and_empty_undo_is_refused():
    stack = UndoStack(limit=3)
    with pytest.raises(RecipeError, match="nothing to undo"):
        stack.undo()
    for z in range(10):
        stack.push(base_recipe(z=z))
    undone = [stack.undo()["layers"][0]["z"] for _ in range(3)]
    assert undone == [8, 7, 6] and not stack.can_undo


def test_undo_history_round_trips_through_json_and_refuses_a_bad_entry():
    stack = UndoStack(base_recipe(z=0))
    for z in (1, 2, 3):
        stack.push(base_recipe(z=z))
    stack.undo()  # one step in the redo branch
    again = UndoStack.from_dict(json.loads(json.dumps(stack.to_dict())))
    assert again.to_dict() == stack.to_dict() and again.can_redo
    assert again.redo()["layers"][0]["z"] == 3 and again.undo()["layers"][0]["z"] == 2
    assert [again.undo()["layers"][0]["z"] for _ in range(2)] == [1, 0] and not again.can_undo
    with pytest.raises(RecipeError, match="unknown op"):
        UndoStack.from_dict({"past": [base_recipe(ops=[{"op": "blur"}])], "current": base_recipe(), "future": []})
    with pytest.raises(RecipeError, match="an undo history is"):
        UndoStack.from_dict({"past": "nope"})


def test_identity_recipe_from_a_maskset_renders_it_back():
    src = blob_set(k=2)
    recipe = recipe_from_maskset("pair", src)
    out = render(recipe, {"pair": src})
    np.testing.assert_array_equal(out.masks, src.masks)
    assert out.ids == src.ids and out.names == src.names


def test_concat_object_all_and_extend_loop_in_one_layer():
    recipe = base_recipe(
        source="pair",
        object="all",
        timeline=[{"op": "trim", "end": 0.5}, {"op": "concat", "source": "clip", "speed": 2.0}],
        extend="loop",
    )
    out = render(recipe, SOURCES)
    union, clip = SOURCES["pair"].union(), SOURCES["clip"].masks[0]
    expected = [union[0], union[1], union[2], union[3], clip[0], clip[2], clip[4], clip[6]]
    np.testing.assert_array_equal(out.masks[0], np.stack(expected))
    dumps(recipe)  # valid
