"""Recipe commands: the edits a user makes (add a keyframe, set the terrain, add a layer, ...) as pure functions.

Each command takes a recipe dict and returns a new one (the input is never changed), so a UI can push the result
on its undo stack; bad values raise RecipeError with a message meant for the user. Rendering validates the whole
recipe; these checks only catch what a form lets through.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from editing.ops import OPS, RecipeError
from editing.terrain import PROFILES

TERRAIN_PRESETS = tuple(p for p in PROFILES if p != "polyline")  # the profiles that need no drawn points


def duration(recipe: Mapping[str, Any]) -> float:
    """The target's length in seconds (num_frames / fps): keyframe times run from 0 to this."""
    return recipe["target"]["num_frames"] / recipe["target"]["fps"]


def find_layer(recipe: Mapping[str, Any], layer_id: Any) -> dict[str, Any]:
    """The layer whose id is `layer_id` (an int, "3", or a UI label "3: name")."""
    if layer_id in (None, ""):
        raise RecipeError("choose a layer first")
    for lay in recipe["layers"]:
        if str(lay.get("id")) == str(layer_id).split(":")[0]:
            return lay
    raise RecipeError(f"there is no layer {layer_id}; layers: {[lay.get('id') for lay in recipe['layers']]}")


def layer_choices(recipe: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(label, value) per layer for a picker: ("1: tiger", "1")."""
    if not recipe:
        return []
    return [(f"{lay['id']}: {_layer_name(lay)}", str(lay["id"])) for lay in recipe["layers"]]


def _layer_name(lay: Mapping[str, Any]) -> str:
    return str(lay.get("name", lay.get("source", "boxes")))


def _edit(recipe: Mapping[str, Any], layer_id: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    new = copy.deepcopy(dict(recipe))
    return new, find_layer(new, layer_id)


def _number(value: Any, default: float = 0.0) -> float:
    return float(value) if value not in (None, "") else default


def add_keyframe(
    recipe: Mapping[str, Any],
    layer_id: Any,
    t: float,
    scale: float = 1.0,
    x: float = 0.0,
    y: float = 0.0,
    rotate: float = 0.0,
    ease: str = "linear",
    anchor: Any = "centroid",
) -> dict[str, Any]:
    """Add (or replace, at the same time) a zoom/pan/rotate keyframe on a layer; an identity key starts at 0 s."""
    new, lay = _edit(recipe, layer_id)
    end, t = duration(new), _number(t)
    if not 0 <= t <= end + 1e-9:
        raise RecipeError(f"keyframe time {t:g} s is outside the edit's 0..{end:.2f} s")
    if not scale or scale <= 0:
        raise RecipeError(f"zoom must be > 0 (1 = unchanged, 2 = twice as large), got {scale}")
    ops = lay.setdefault("ops", [])
    op = next((o for o in ops if o["op"] == "transform"), None)
    if op is None:
        op = {"op": "transform", "anchor": anchor, "keys": []}
        ops.insert(0, op)
        if t > 0:
            op["keys"].append({"t": 0.0, "scale": 1.0, "x": 0.0, "y": 0.0, "rotate": 0.0})
    op["anchor"] = anchor
    key = {"t": t, "scale": float(scale), "x": _number(x), "y": _number(y), "rotate": _number(rotate), "ease": ease}
    op["keys"] = sorted([k for k in op["keys"] if abs(k["t"] - t) > 1e-9] + [key], key=lambda k: k["t"])
    return new


def clear_keyframes(recipe: Mapping[str, Any], layer_id: Any) -> dict[str, Any]:
    """Remove the layer's zoom/pan/rotate keyframes."""
    new, lay = _edit(recipe, layer_id)
    lay["ops"] = [o for o in lay.get("ops", []) if o["op"] != "transform"]
    return new


def set_terrain(
    recipe: Mapping[str, Any], layer_id: Any, profile: str, rise: float, tilt: float = 0.0
) -> dict[str, Any]:
    """Replace the layer's terrain warp (`flat` removes it); `rise` is the climb as a fraction of frame height."""
    if profile not in TERRAIN_PRESETS:
        raise RecipeError(f"terrain must be one of {', '.join(TERRAIN_PRESETS)}, got {profile!r}")
    new, lay = _edit(recipe, layer_id)
    ops = [o for o in lay.get("ops", []) if o["op"] != "terrain"]
    if profile != "flat":
        ops.append({"op": "terrain", "profile": profile, "rise": float(rise), "tilt": _number(tilt)})
    lay["ops"] = ops
    return new


def set_timing(
    recipe: Mapping[str, Any], layer_id: Any, start: float, speed: float, retime_seconds: float = 0.0
) -> dict[str, Any]:
    """Layer time offset (s), playback speed, and optionally retime its motion to a duration (loops to fill)."""
    new, lay = _edit(recipe, layer_id)
    if not speed or speed <= 0:
        raise RecipeError(f"speed must be > 0 (1 = as filmed, 2 = twice as fast), got {speed}")
    lay["start"] = _number(start)
    lay["speed"] = float(speed)
    timeline_ops = [o for o in lay.get("timeline", []) if o["op"] != "retime"]
    if retime_seconds and retime_seconds > 0:
        timeline_ops.append({"op": "retime", "duration": float(retime_seconds), "mode": "loop"})
    lay["timeline"] = timeline_ops
    return new


def set_length(recipe: Mapping[str, Any], seconds: float, max_seconds: float | None = None) -> dict[str, Any]:
    """Length of the edited motion: round(seconds * fps) + 1 frames, as clips are counted; layers loop to fill it."""
    if not seconds or seconds <= 0 or (max_seconds is not None and seconds > max_seconds):
        limit = f"{max_seconds:g}" if max_seconds is not None else "any"
        raise RecipeError(f"length must be between 0 and {limit} s, got {seconds}")
    new = copy.deepcopy(dict(recipe))
    new["target"]["num_frames"] = int(round(seconds * new["target"]["fps"])) + 1
    for lay in new["layers"]:
        lay.setdefault("extend", "loop")
    return new


def add_layer(recipe: Mapping[str, Any], source: str, name: str, object: Any = "all") -> dict[str, Any]:
    """A new layer on top (all objects of `source` as one subject by default), looping to fill the target."""
    new = copy.deepcopy(dict(recipe))
    new["layers"].append(
        {
            "id": max((lay.get("id", 0) for lay in new["layers"]), default=0) + 1,
            "name": name,
            "source": source,
            "object": object,
            "z": max((lay.get("z", 0) for lay in new["layers"]), default=0) + 1,
            "extend": "loop",
            "timeline": [],
            "ops": [],
        }
    )
    return new


def add_box_layer(
    recipe: Mapping[str, Any], boxes: list[dict[str, Any]], name: str = "boxes", shape: Any = "ellipse"
) -> dict[str, Any]:
    """A new layer on top drawn as keyframed boxes [{t, box: [x0, y0, x1, y1]}] filled with `shape`."""
    if len(boxes) < 1:
        raise RecipeError("draw at least one box (two or more at different times make it move)")
    new = copy.deepcopy(dict(recipe))
    new["layers"].append(
        {
            "id": max((lay.get("id", 0) for lay in new["layers"]), default=0) + 1,
            "name": name,
            "boxes": sorted(copy.deepcopy(boxes), key=lambda b: b["t"]),
            "shape": shape,
            "z": max((lay.get("z", 0) for lay in new["layers"]), default=0) + 1,
            "timeline": [],
            "ops": [],
        }
    )
    return new


def set_path(
    recipe: Mapping[str, Any],
    layer_id: Any,
    points: list[dict[str, Any]],
    smooth: bool = True,
    orient: bool = False,
    anchor: Any = "centroid",
) -> dict[str, Any]:
    """Replace the layer's drawn path (an empty list removes it); the path goes last, after the other moves."""
    new, lay = _edit(recipe, layer_id)
    ops = [o for o in lay.get("ops", []) if o["op"] != "path"]
    if points:
        end = duration(new)
        late = [p["t"] for p in points if not 0 <= p["t"] <= end + 1e-9]
        if late:
            raise RecipeError(f"path point time {late[0]:g} s is outside the edit's 0..{end:.2f} s")
        path = {"op": "path", "points": sorted(points, key=lambda p: p["t"]), "anchor": anchor}
        ops.append({**path, "smooth": bool(smooth), "orient": bool(orient)})
    lay["ops"] = ops
    return new


def describe_op(op: Mapping[str, Any]) -> str:
    """A few words for one op, e.g. `zoom/pan (2 keys)` or `terrain uphill +0.25`."""
    if op["op"] == "transform":
        return f"zoom/pan ({len(op['keys'])} keys)"
    if op["op"] == "path":
        return f"path ({len(op['points'])} points{', smooth' if op.get('smooth') else ''})"
    if op["op"] == "terrain":
        default = OPS["terrain"].param["rise"].default
        return f"terrain {op['profile']} {op.get('rise', default):+g}"
    return op["op"]


def _boxes_count(n: int) -> str:
    """`1 box`, `2 boxes`."""
    return f"{n} box" if n == 1 else f"{n} boxes"


def summary(recipe: Mapping[str, Any]) -> str:
    """One line per layer: what the edit does, e.g. `- layer 1 (object 1): zoom/pan (2 keys), terrain uphill`."""
    lines = []
    for lay in recipe["layers"]:
        parts = [describe_op(op) for op in lay.get("ops", [])]
        if lay.get("boxes"):  # drawn, not extracted
            shape = lay.get("shape", "ellipse")
            fill = f"the silhouette of {shape.get('source')}" if isinstance(shape, Mapping) else shape
            parts.insert(0, f"{_boxes_count(len(lay['boxes']))} drawn as {fill}")
        parts += [op["op"] for op in lay.get("timeline", [])]
        if lay.get("start"):
            parts.append(f"starts at {lay['start']:g} s")
        if lay.get("speed", 1.0) != 1.0:
            parts.append(f"speed x{lay['speed']:g}")
        lines.append(f"- layer {lay['id']} ({_layer_name(lay)}): {', '.join(parts) or 'as extracted'}")
    return "\n".join(lines)


# -- drawing (what a click on the preview adds to a drawing in progress) ---------------------------------------------
def add_path_point(points: list[dict[str, Any]], t: float, x: float, y: float) -> list[dict[str, Any]]:
    """The drawn path with a point at (`x`, `y`) px at `t` s (replacing one at the same time), sorted by time."""
    point = {"t": round(float(t), 4), "x": round(float(x), 1), "y": round(float(y), 1)}
    return sorted([p for p in points if abs(p["t"] - point["t"]) > 1e-6] + [point], key=lambda p: p["t"])


def add_box_corner(
    boxes: list[dict[str, Any]], corner: list[float] | None, t: float, x: float, y: float
) -> tuple[list[dict[str, Any]], list[float] | None]:
    """A click while drawing boxes: the first click marks a corner, the second closes the box at `t` s (replacing
    one at the same time). Returns (boxes, pending corner)."""
    if corner is None:
        return boxes, [float(x), float(y)]
    (x0, x1), (y0, y1) = sorted((corner[0], float(x))), sorted((corner[1], float(y)))
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise RecipeError("a box needs two corners at least a pixel apart; click the opposite corner")
    box = {"t": round(float(t), 4), "box": [round(x0, 1), round(y0, 1), round(x1 + 1, 1), round(y1 + 1, 1)]}
    return sorted([b for b in boxes if abs(b["t"] - box["t"]) > 1e-6] + [box], key=lambda b: b["t"]), None
