"""The op registry drives validation, rendering, widget hints and the docs; recipe commands are pure functions."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from editing import commands, ops
from editing.recipe import RecipeError, reference_markdown, render, validate
from editing.terrain import PROFILES
from editing.transforms import EASES, NAMED_ANCHORS
from mvideo_core.masks import MaskSet

DOCS = Path(__file__).resolve().parents[1] / "docs" / "editing.md"


def recipe(**layer) -> dict:
    return {
        "version": 1,
        "target": {"width": 32, "height": 24, "fps": 8.0, "num_frames": 8},
        "layers": [{"source": "clip", **layer}],
    }


SOURCES = {"clip": MaskSet(np.pad(np.ones((1, 8, 6, 8), bool), ((0, 0), (0, 0), (8, 10), (4, 20))), 8.0)}


def test_docs_hold_the_op_reference_generated_from_the_registry():
    text = DOCS.read_text()
    assert reference_markdown() in text, (
        "docs/editing.md is stale: run `python -m editing docs --write docs/editing.md`"
    )
    for name in ops.OPS:
        assert f"**`{name}`**" in text


def test_widget_hints_come_from_the_parameters():
    terrain = ops.OPS["terrain"].param
    assert terrain["profile"].widget() == {
        "label": "Path",
        "value": "uphill",
        "widget": "dropdown",
        "choices": list(PROFILES),
    }
    assert terrain["tilt"].widget()["widget"] == "slider" and terrain["tilt"].widget()["minimum"] == -1
    keys = {p.name: p for p in ops.KEYFRAME_PARAMS}
    assert keys["ease"].widget()["choices"] == list(EASES)
    assert ops.ANCHOR.widget()["choices"] == list(NAMED_ANCHORS)
    assert keys["scale"].widget() == {
        "label": "Zoom (x)",
        "value": 1.0,
        "widget": "number",
        "minimum": None,
        "maximum": None,
        "step": 0.05,
    }


def test_a_registered_op_is_validated_and_rendered_with_no_other_change():
    spec = ops.OpSpec(
        "invert",
        "ops",
        "Swap inside and outside.",
        (ops.Param("strength", "integer", "how many times", default=1, lo=1, hi=3),),
        lambda masks, op, ctx: ~masks if op.get("strength", 1) % 2 else masks,
    )
    ops.register(spec)
    try:
        out = render(recipe(ops=[{"op": "invert"}]), SOURCES)
        np.testing.assert_array_equal(out.masks[0], ~SOURCES["clip"].masks[0])
        with pytest.raises(RecipeError, match=r"layers\[0\]\.ops\[0\] \(invert\)\.strength must be <= 3, got 4"):
            validate(recipe(ops=[{"op": "invert", "strength": 4}]))
        with pytest.raises(RecipeError, match="belongs in the layer's 'ops' list"):
            validate(recipe(timeline=[{"op": "invert"}]))
    finally:
        del ops.OPS["invert"]
    with pytest.raises(ValueError, match="registered twice"):
        ops.register(ops.OPS["trim"])


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        (ops.Param("n", "integer", "", lo=1), 1.5, "must be an integer, got 1.5"),
        (ops.Param("n", "number", "", positive=True), 0, "must be > 0"),
        (ops.Param("n", "number", ""), float("nan"), "must be a number"),
        (ops.Param("n", "number", ""), True, "must be a number"),
        (ops.Param("c", "choice", "", choices=("a", "b")), "z", r"must be one of \['a', 'b'\]"),
        (ops.Param("b", "bool", ""), 1, "must be true or false"),
        (ops.Param("o", "object", ""), 0, 'or "all"'),
        (ops.Param("s", "source", ""), "", "non-empty name"),
    ],
)
def test_parameter_checks_say_what_is_wrong(param, value, message):
    assert re.search(message, param.check(value) or "")


# -- commands --------------------------------------------------------------------------------------------------------
def test_commands_return_new_recipes_and_leave_their_input_alone():
    base = validate(recipe(id=1, name="tiger"))
    snapshot = validate(base)
    zoomed = commands.add_keyframe(base, "1: tiger", 0.5, 1.5, x=4)
    assert base == snapshot
    keys = zoomed["layers"][0]["ops"][0]["keys"]
    assert [k["t"] for k in keys] == [0.0, 0.5] and keys[1]["scale"] == 1.5 and keys[1]["x"] == 4.0
    replaced = commands.add_keyframe(zoomed, 1, 0.5, 2.0)
    assert [k["scale"] for k in replaced["layers"][0]["ops"][0]["keys"]] == [1.0, 2.0]
    assert commands.clear_keyframes(replaced, 1)["layers"][0]["ops"] == []
    hill = commands.set_terrain(zoomed, 1, "uphill", 0.2, 0.5)
    assert hill["layers"][0]["ops"][-1] == {"op": "terrain", "profile": "uphill", "rise": 0.2, "tilt": 0.5}
    assert commands.set_terrain(hill, 1, "flat", 0.2)["layers"][0]["ops"] == zoomed["layers"][0]["ops"]
    timed = commands.set_timing(base, 1, 0.25, 2.0, retime_seconds=2.0)
    assert timed["layers"][0]["timeline"] == [{"op": "retime", "duration": 2.0, "mode": "loop"}]
    longer = commands.set_length(base, 4.0)
    assert longer["target"]["num_frames"] == 33 and longer["layers"][0]["extend"] == "loop"
    two = commands.add_layer(base, "clip", "copy")
    assert [lay["id"] for lay in two["layers"]] == [1, 2] and two["layers"][1]["z"] == 1
    for new in (zoomed, hill, timed, longer, two):
        render(new, SOURCES)  # every command's result is a valid, renderable recipe


def test_summary_duration_and_choices_describe_the_edit():
    edit = commands.set_terrain(commands.add_keyframe(recipe(id=1, name="tiger"), 1, 0.5, 1.5), 1, "uphill", 0.2)
    edit = commands.set_timing(edit, 1, 0.25, 2.0)
    assert (
        commands.summary(edit)
        == "- layer 1 (tiger): zoom/pan (2 keys), terrain uphill +0.2, starts at 0.25 s, speed x2"
    )
    assert commands.duration(edit) == 1.0
    assert commands.layer_choices(edit) == [("1: tiger", "1")] and commands.layer_choices(None) == []


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (lambda r: commands.add_keyframe(r, 1, 99.0, 1.2), r"keyframe time 99 s is outside the edit's 0\.\.1\.00 s"),
        (lambda r: commands.add_keyframe(r, 1, 0.5, 0), "zoom must be > 0"),
        (lambda r: commands.set_timing(r, 1, 0, 0), "speed must be > 0"),
        (lambda r: commands.set_terrain(r, 1, "polyline", 0.2), "terrain must be one of flat, uphill"),
        (lambda r: commands.set_length(r, 100, max_seconds=64), "length must be between 0 and 64 s"),
        (lambda r: commands.clear_keyframes(r, None), "choose a layer first"),
        (lambda r: commands.clear_keyframes(r, 7), r"there is no layer 7; layers: \[1\]"),
    ],
)
def test_commands_refuse_bad_values_with_a_message_for_the_user(command, message):
    with pytest.raises(RecipeError, match=message):
        command(recipe(id=1))


def test_the_json_examples_in_the_docs_are_valid():
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)\n```", DOCS.read_text(), re.S)]
    assert len(blocks) >= 2
    target = {"width": 720, "height": 480, "fps": 8.0, "num_frames": 33}
    for block in blocks:
        layer = {"source": "clip", "ops": [block]} if "op" in block else block
        validate({"version": 1, "target": target, "layers": [layer]})
