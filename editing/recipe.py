"""Edit recipes: versioned JSON describing a mask edit; `render(recipe, sources) -> MaskSet` replays it.

Editing is non-destructive: the sources (extracted MaskSets) never change, a recipe says what to do with them,
undo/redo is a stack of recipes (`UndoStack`). A complete version-1 recipe::

    {
      "version": 1,
      "target": {"width": 720, "height": 480, "fps": 8.0, "num_frames": 33},
      "occlusion": "full",
      "layers": [
        {
          "id": 1, "name": "tiger", "source": "tiger.mp4", "object": 1,
          "z": 0, "start": 0.0, "speed": 1.0, "fit": "crop", "extend": "none",
          "timeline": [
            {"op": "trim", "start": 0.5, "end": 4.5},
            {"op": "retime", "duration": 4.0, "mode": "loop"}
          ],
          "ops": [
            {"op": "transform", "anchor": "bottom",
             "keys": [{"t": 0.0, "scale": 1.0}, {"t": 4.0, "scale": 1.5, "x": -40, "ease": "ease_in_out"}]},
            {"op": "terrain", "profile": "uphill", "rise": 0.2, "along": "time", "tilt": 1.0},
            {"op": "fill_holes"}, {"op": "remove_specks", "min_area": 30}, {"op": "smooth", "window": 3}
          ]
        },
        {
          "id": 2, "name": "dancer", "source": "dance.mp4", "object": "all", "z": 1, "start": 1.0,
          "timeline": [{"op": "pingpong", "times": 2}],
          "ops": [{"op": "transform", "anchor": [0.5, 1.0], "keys": [{"t": 0, "scale": 0.6, "x": 200}]}]
        }
      ]
    }

Semantics, in the order `render` applies them to each layer:
1. The layer's `object` (an id, or "all" for the union of the source's objects; may be left out when the source
   has one object) is resampled to the target fps playing at `speed` x.
2. `timeline` ops, in order, on the layer's own frames: trim {start, end} s, speed {factor}, reverse, loop {times},
   pingpong {times}, retime {duration, mode: stretch|loop|pingpong}, concat {source, object, speed}.
3. The layer is placed at `start` seconds of the target timeline (absent outside its span unless `extend` is
   "hold" or "loop") and resized to the target (`fit`: crop|letterbox|stretch).
4. `ops`, in order, on the target timeline (keyframe times `t` are target seconds in [0, num_frames / fps]):
   transform {keys, anchor}, terrain {profile, rise, steps, points, along, tilt, start, end}, flip {axis},
   fill_holes, remove_specks {min_area}, dilate {radius}, erode {radius}, smooth {window}.
5. Layers are composited bottom (lowest `z`) to top; `occlusion` "full" keeps whole silhouettes, "visible"
   removes pixels covered by higher layers (see editing.composite). Ids are the layers' `id` (default 1, 2, ...).

Version 0 (the prototype format: `size`/`fps`/`num_frames` at the top, one mixed `ops` list, keyframes and
offsets in frames) still loads through `migrate`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from editing import cleanup, timeline
from editing.composite import FITS, OCCLUSIONS, Layer, composite, fit_size, placement_indices
from editing.terrain import ALONG, check_profile, terrain_warp
from editing.transforms import EditError, check_anchor, check_keyframes, keyframed_transform
from mvideo_core.masks import MaskSet

VERSION = 1
MAX_LAYER_CELLS = 2**31  # bool pixels x frames per layer (2 GiB): 480x720 allows ~6200 frames (13 min at 8 fps)


class RecipeError(ValueError):
    """A recipe is malformed or cannot be rendered; the message says where (e.g. `layers[1].ops[0]`) and why."""


# -- parameter specs -----------------------------------------------------------------------------------------------
def _num(lo: float | None = None, hi: float | None = None, positive: bool = False, integer: bool = False):
    def check(v: Any) -> str | None:
        kinds = (int,) if integer else (int, float)
        if isinstance(v, bool) or not isinstance(v, kinds) or not np.isfinite(v):
            return f"must be {'an integer' if integer else 'a number'}, got {v!r}"
        if positive and v <= 0:
            return f"must be > 0, got {v!r}"
        if lo is not None and v < lo:
            return f"must be >= {lo}, got {v!r}"
        if hi is not None and v > hi:
            return f"must be <= {hi}, got {v!r}"
        return None

    return check


def _choice(options: tuple[str, ...]):
    return lambda v: None if v in options else f"must be one of {list(options)}, got {v!r}"


def _any(v: Any) -> str | None:  # checked by the op's own validator
    return None


def _object_ref(v: Any) -> str | None:
    if v == "all" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
        return None
    return f'must be an object id (integer >= 1) or "all", got {v!r}'


def _source_ref(v: Any) -> str | None:
    return None if isinstance(v, str) and v else f"must be the non-empty name of a source, got {v!r}"


# op name -> (required params, {param: checker})
TIMELINE_OPS: dict[str, tuple[tuple[str, ...], dict[str, Callable[[Any], str | None]]]] = {
    "trim": ((), {"start": _num(lo=0), "end": _num(positive=True)}),
    "speed": (("factor",), {"factor": _num(positive=True)}),
    "reverse": ((), {}),
    "loop": (("times",), {"times": _num(lo=1, hi=10_000, integer=True)}),
    "pingpong": (("times",), {"times": _num(lo=1, hi=10_000, integer=True)}),
    "retime": (
        ("duration",),
        {"duration": _num(positive=True, hi=3600), "mode": _choice(timeline.RETIME_MODES)},
    ),
    "concat": (("source",), {"source": _source_ref, "object": _object_ref, "speed": _num(positive=True)}),
}
SPATIAL_OPS: dict[str, tuple[tuple[str, ...], dict[str, Callable[[Any], str | None]]]] = {
    "transform": (("keys",), {"keys": _any, "anchor": _any}),
    "terrain": (
        ("profile",),
        {
            "profile": _any,
            "rise": _any,
            "steps": _any,
            "points": _any,
            "along": _choice(ALONG),
            "tilt": _num(lo=-1, hi=1),
            "start": _num(lo=0),
            "end": _num(lo=0),
        },
    ),
    "flip": (("axis",), {"axis": _choice(("x", "y"))}),
    "fill_holes": ((), {}),
    "remove_specks": (("min_area",), {"min_area": _num(lo=0, integer=True)}),
    "dilate": (("radius",), {"radius": _num(lo=0, hi=256, integer=True)}),
    "erode": (("radius",), {"radius": _num(lo=0, hi=256, integer=True)}),
    "smooth": ((), {"window": _num(lo=1, hi=99, integer=True)}),
}
LAYER_FIELDS: dict[str, Callable[[Any], str | None]] = {
    "id": _num(lo=1, integer=True),
    "name": lambda v: None if isinstance(v, str) else f"must be a string, got {v!r}",
    "source": _source_ref,
    "object": _object_ref,
    "z": _num(),
    "start": _num(lo=-3600, hi=3600),
    "speed": _num(positive=True, hi=1000),
    "fit": _choice(FITS),
    "extend": _choice(("none", "hold", "loop")),
    "timeline": _any,
    "ops": _any,
}
TARGET_FIELDS = {
    "width": _num(lo=1, hi=8192, integer=True),
    "height": _num(lo=1, hi=8192, integer=True),
    "fps": _num(positive=True, hi=240),
    "num_frames": _num(lo=1, hi=100_000, integer=True),
}


def _check_op(op: Any, where: str, specs: dict, other: dict, duration: float) -> None:
    if not isinstance(op, Mapping) or "op" not in op:
        raise RecipeError(f"{where} must be a dict like {{'op': 'reverse'}}, got {op!r}")
    name = op["op"]
    if name not in specs:
        other_key = "timeline" if "trim" in other else "ops"
        hint = f" (that op belongs in the layer's '{other_key}' list)" if name in other else ""
        raise RecipeError(f"{where}: unknown op {name!r}{hint}; known ops here: {sorted(specs)}")
    required, params = specs[name]
    unknown = sorted(set(op) - {"op"} - set(params))
    if unknown:
        raise RecipeError(f"{where} ({name}): unknown parameters {unknown}; known: {sorted(params)}")
    for p in required:
        if p not in op:
            raise RecipeError(f"{where} ({name}): missing parameter {p!r}")
    for p, check in params.items():
        if p in op and (msg := check(op[p])):
            raise RecipeError(f"{where} ({name}).{p} {msg}")
    try:
        if name == "transform":
            keys = check_keyframes(op["keys"], "keys")
            for i, key in enumerate(keys):
                if not 0 <= key["t"] <= duration + 1e-9:
                    raise RecipeError(
                        f"{where} (transform).keys[{i}].t = {key['t']} s is outside the target's 0..{duration:.4g} s"
                    )
            check_anchor(op.get("anchor", "centroid"))
        elif name == "terrain":
            check_profile(op["profile"], op.get("rise", 0.25), op.get("steps", 4), op.get("points"))
            for p in ("start", "end"):
                if p in op and op[p] > duration + 1e-9:
                    raise RecipeError(f"{where} (terrain).{p} = {op[p]} s is outside the target's 0..{duration:.4g} s")
        elif name == "trim" and "end" in op and op["end"] <= op.get("start", 0):
            raise RecipeError(f"{where} (trim) needs start < end, got start={op.get('start', 0)}, end={op['end']}")
        elif name == "smooth" and op.get("window", 3) % 2 == 0:
            raise RecipeError(f"{where} (smooth).window must be odd (3, 5, ...), got {op['window']}")
    except EditError as err:
        raise RecipeError(f"{where} ({name}): {err}") from None


# -- versions ------------------------------------------------------------------------------------------------------
def migrate(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """Upgrade an older recipe to the current version (v0 -> v1); current recipes are returned as a copy."""
    if not isinstance(recipe, Mapping):
        raise RecipeError(f"a recipe must be a JSON object (dict), got {type(recipe).__name__}")
    version = recipe.get("version", 0)
    if version == VERSION:
        return copy.deepcopy(dict(recipe))
    if version != 0:
        raise RecipeError(f"unsupported recipe version {version!r}; this build reads versions 0..{VERSION}")
    return _migrate_v0(recipe)


def _migrate_v0(old: Mapping[str, Any]) -> dict[str, Any]:
    # v0: {"size": [h, w], "fps", "num_frames", "layers": [{"source", "object", "offset_frames", "ops": [...]}]},
    # keyframes {"frame": i, ...}, the affine op named "affine", timeline and spatial ops in one list.
    try:
        (h, w), fps, n = old["size"], old["fps"], old["num_frames"]
    except (KeyError, TypeError, ValueError) as err:
        raise RecipeError(f"a version-0 recipe needs 'size': [h, w], 'fps' and 'num_frames' ({err!r})") from None
    layers = []
    for i, lay in enumerate(old.get("layers", [])):
        if not isinstance(lay, Mapping):
            raise RecipeError(f"layers[{i}] must be a dict, got {lay!r}")
        new = {k: v for k, v in lay.items() if k not in ("offset_frames", "ops")}
        new["start"] = lay.get("offset_frames", 0) / fps
        new["timeline"], new["ops"] = [], []
        for op in lay.get("ops", []):
            op = dict(op) if isinstance(op, Mapping) else op
            if isinstance(op, dict) and op.get("op") == "affine":
                op["op"] = "transform"
                op["keys"] = [
                    {("t" if k == "frame" else k): (v / fps if k == "frame" else v) for k, v in key.items()}
                    for key in op.get("keys", [])
                ]
            is_time = isinstance(op, dict) and op.get("op") in TIMELINE_OPS
            (new["timeline"] if is_time else new["ops"]).append(op)
        layers.append(new)
    return {
        "version": VERSION,
        "target": {"width": w, "height": h, "fps": fps, "num_frames": n},
        "occlusion": old.get("occlusion", "full"),
        "layers": layers,
    }


# -- validation ----------------------------------------------------------------------------------------------------
def validate(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """Migrate and check a recipe without its sources; returns the (current-version) recipe or raises RecipeError."""
    recipe = migrate(recipe)
    unknown = sorted(set(recipe) - {"version", "target", "layers", "occlusion"})
    if unknown:
        raise RecipeError(f"unknown top-level fields {unknown}; known: ['version', 'target', 'layers', 'occlusion']")
    target = recipe.get("target")
    if not isinstance(target, Mapping):
        raise RecipeError(f"'target' must be a dict {{width, height, fps, num_frames}}, got {target!r}")
    for k, check in TARGET_FIELDS.items():
        if k not in target:
            raise RecipeError(f"target.{k} is missing; the target needs {list(TARGET_FIELDS)}")
        if msg := check(target[k]):
            raise RecipeError(f"target.{k} {msg}")
    if extra := sorted(set(target) - set(TARGET_FIELDS)):
        raise RecipeError(f"target has unknown fields {extra}; known: {list(TARGET_FIELDS)}")
    cells = target["num_frames"] * target["width"] * target["height"]
    if cells > MAX_LAYER_CELLS:
        raise RecipeError(
            f"target {target['width']}x{target['height']} x {target['num_frames']} frames needs "
            f"{cells / 2**30:.1f} GiB per layer, over the {MAX_LAYER_CELLS / 2**30:.0f} GiB limit; "
            "use fewer frames or a smaller size (the model works at 480x720)"
        )
    if msg := _choice(OCCLUSIONS)(recipe.get("occlusion", "full")):
        raise RecipeError(f"occlusion {msg}")
    layers = recipe.get("layers")
    if not isinstance(layers, list) or not layers:
        raise RecipeError("'layers' must be a non-empty list; add at least one layer with a 'source'")
    duration = target["num_frames"] / target["fps"]
    ids = []
    for i, lay in enumerate(layers):
        where = f"layers[{i}]"
        if not isinstance(lay, Mapping):
            raise RecipeError(f"{where} must be a dict with at least 'source', got {lay!r}")
        if "source" not in lay:
            raise RecipeError(f"{where} has no 'source' (the name of the MaskSet it takes its object from)")
        if extra := sorted(set(lay) - set(LAYER_FIELDS)):
            raise RecipeError(f"{where} has unknown fields {extra}; known: {sorted(LAYER_FIELDS)}")
        for k, check in LAYER_FIELDS.items():
            if k in lay and (msg := check(lay[k])):
                raise RecipeError(f"{where}.{k} {msg}")
        ids.append(lay.get("id", i + 1))
        for key, specs, other in (("timeline", TIMELINE_OPS, SPATIAL_OPS), ("ops", SPATIAL_OPS, TIMELINE_OPS)):
            ops = lay.get(key, [])
            if not isinstance(ops, list):
                raise RecipeError(f"{where}.{key} must be a list of ops, got {ops!r}")
            for j, op in enumerate(ops):
                _check_op(op, f"{where}.{key}[{j}]", specs, other, duration)
    if len(set(ids)) != len(ids):
        raise RecipeError(f"layer ids must be unique, got {ids}; set 'id' on each layer")
    return recipe


# -- JSON ------------------------------------------------------------------------------------------------------------
def dumps(recipe: Mapping[str, Any]) -> str:
    """Canonical JSON text of a validated recipe (sorted keys: equal recipes give equal text)."""
    return json.dumps(validate(recipe), sort_keys=True, indent=1)


def loads(text: str | bytes) -> dict[str, Any]:
    """Parse, migrate and validate recipe JSON text."""
    if not isinstance(text, str | bytes) or not text.strip():
        raise RecipeError("recipe JSON is empty; expected an object like {'version': 1, 'target': ..., 'layers': ...}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise RecipeError(f"recipe is not valid JSON ({err}); was the file truncated?") from None
    return validate(data)


def save(recipe: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(dumps(recipe))
    return path


def load(path: str | Path) -> dict[str, Any]:
    try:
        return loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise RecipeError(f"cannot read recipe file {path}: {err}") from None


def recipe_from_maskset(source: str, masks: MaskSet) -> dict[str, Any]:
    """The identity recipe: one layer per object of `masks`, target = its size, fps and length (a UI's start)."""
    h, w = masks.size
    return {
        "version": VERSION,
        "target": {"width": w, "height": h, "fps": masks.fps, "num_frames": masks.num_frames},
        "layers": [
            {"id": i, "name": n, "source": source, "object": i, "z": k, "timeline": [], "ops": []}
            for k, (i, n) in enumerate(zip(masks.ids, masks.names))
        ],
    }


# -- rendering -----------------------------------------------------------------------------------------------------
def _object_masks(sources: Mapping[str, MaskSet], name: str, obj: Any, where: str) -> tuple[np.ndarray, float, str]:
    """bool [T, h, w] of one source object (or the union with "all"), its fps and name."""
    if name not in sources:
        raise RecipeError(f"{where}: source {name!r} was not given; sources available: {sorted(sources)}")
    src = sources[name]
    if not isinstance(src, MaskSet):
        raise RecipeError(f"{where}: source {name!r} must be a MaskSet, got {type(src).__name__}")
    if obj == "all":
        return src.union(), src.fps, name
    if obj is None:
        if src.num_objects != 1:
            raise RecipeError(f"{where}: source {name!r} has objects {src.ids}; say which with 'object' (or 'all')")
        obj = src.ids[0]
    if obj not in src.ids:
        raise RecipeError(f"{where}: source {name!r} has no object {obj}; its objects are {src.ids}")
    k = src.index_of(obj)
    return src.masks[k], src.fps, src.names[k]


def _render_layer(lay: Mapping[str, Any], i: int, target: Mapping[str, Any], sources: Mapping[str, MaskSet]) -> Layer:
    where = f"layers[{i}]"
    fps, n, size = float(target["fps"]), int(target["num_frames"]), (int(target["height"]), int(target["width"]))
    base, base_fps, base_name = _object_masks(sources, lay["source"], lay.get("object"), where)
    # 1. Resample to the target fps at the layer's speed; frames are indices into a pool of source clips.
    pool = [base]
    seq = timeline.resample_indices(len(base), base_fps, fps, lay.get("speed", 1.0))
    # 2. Timeline ops on indices (one gather at the end).
    for j, op in enumerate(lay.get("timeline", [])):
        name, at = op["op"], f"{where}.timeline[{j}] ({op['op']})"
        try:
            if name == "trim":
                seq = seq[timeline.trim_indices(len(seq), fps, op.get("start", 0.0), op.get("end"))]
            elif name == "speed":
                seq = seq[timeline.resample_indices(len(seq), fps, fps, op["factor"])]
            elif name == "reverse":
                seq = seq[::-1]
            elif name == "loop":
                seq = seq[timeline.loop_indices(len(seq), times=op["times"])]
            elif name == "pingpong":
                seq = seq[timeline.pingpong_indices(len(seq), times=op["times"])]
            elif name == "retime":
                seq = seq[timeline.retime_indices(len(seq), fps, op["duration"], op.get("mode", "stretch"))]
            elif name == "concat":
                other, other_fps, _ = _object_masks(sources, op["source"], op.get("object"), at)
                extra = timeline.resample_indices(len(other), other_fps, fps, op.get("speed", 1.0))
                seq = np.concatenate([seq, extra + sum(len(p) for p in pool)])
                pool.append(other)
        except EditError as err:
            raise RecipeError(f"{at}: {err}") from None
    # 3. Place on the target timeline and resize to the target canvas: masks [n, H, W].
    place = placement_indices(len(seq), n, int(round(lay.get("start", 0.0) * fps)), lay.get("extend", "none"))
    frames = np.where(place >= 0, seq[np.maximum(place, 0)], -1)  # global pool index per target frame
    start, fit = 0, lay.get("fit", "crop")
    if len(pool) == 1 and (frames >= 0).all():  # the common case: one clip covering the target, one gather
        pool = []
        masks = fit_size(base[frames], size, fit)
    else:
        masks = np.zeros((n, *size), dtype=bool)
    for clip in pool:
        sel = (frames >= start) & (frames < start + len(clip))
        if sel.any():
            masks[sel] = fit_size(clip[frames[sel] - start], size, fit)
        start += len(clip)
    # 4. Spatial ops on the target timeline.
    for j, op in enumerate(lay.get("ops", [])):
        name = op["op"]
        try:
            if name == "transform":
                masks = keyframed_transform(masks, fps, op["keys"], op.get("anchor", "centroid"))
            elif name == "terrain":
                params = {k: v for k, v in op.items() if k != "op" and k != "profile"}
                masks = terrain_warp(masks, fps, op["profile"], **params)
            elif name == "flip":
                masks = masks[:, :, ::-1] if op["axis"] == "x" else masks[:, ::-1, :]
            elif name == "fill_holes":
                masks = cleanup.fill_holes(masks)
            elif name == "remove_specks":
                masks = cleanup.remove_specks(masks, op["min_area"])
            elif name == "dilate":
                masks = cleanup.dilate(masks, op["radius"])
            elif name == "erode":
                masks = cleanup.erode(masks, op["radius"])
            elif name == "smooth":
                masks = cleanup.temporal_smooth(masks, op.get("window", 3))
        except EditError as err:
            raise RecipeError(f"{where}.ops[{j}] ({name}): {err}") from None
    return Layer(np.ascontiguousarray(masks), int(lay.get("id", i + 1)), lay.get("name", base_name), lay.get("z", 0))


def render(recipe: Mapping[str, Any], sources: Mapping[str, MaskSet]) -> MaskSet:
    """Replay a recipe on its sources (name -> MaskSet): bool [K, T, H, W] on the target; deterministic."""
    recipe = validate(recipe)
    if not isinstance(sources, Mapping):
        raise RecipeError(f"sources must be a dict of name -> MaskSet, got {type(sources).__name__}")
    target = recipe["target"]
    layers = [_render_layer(lay, i, target, sources) for i, lay in enumerate(recipe["layers"])]
    out = composite(layers, recipe.get("occlusion", "full"), fps=float(target["fps"]))
    out.meta.update({"recipe_version": VERSION})
    return out


# -- undo / redo ---------------------------------------------------------------------------------------------------
class UndoStack:
    """History of recipes: `push` a new edit, `undo`/`redo` move through it. Entries are stored as canonical JSON,
    so later changes to a pushed dict cannot alter the history; `limit` bounds memory."""

    def __init__(self, recipe: Mapping[str, Any] | None = None, limit: int = 200) -> None:
        if limit < 1:
            raise RecipeError(f"undo limit must be >= 1, got {limit}")
        self.limit = limit
        self._past: list[str] = []  # entries before the current one
        self._future: list[str] = []
        self._current: str | None = dumps(recipe) if recipe is not None else None

    @property
    def current(self) -> dict[str, Any] | None:
        return json.loads(self._current) if self._current is not None else None

    @property
    def can_undo(self) -> bool:
        return bool(self._past)

    @property
    def can_redo(self) -> bool:
        return bool(self._future)

    def push(self, recipe: Mapping[str, Any]) -> dict[str, Any]:
        """Record a new edit (validated); clears the redo branch. Pushing the current recipe again is a no-op."""
        text = dumps(recipe)
        if text != self._current:
            if self._current is not None:
                self._past.append(self._current)
                del self._past[: max(0, len(self._past) - self.limit)]
            self._current, self._future = text, []
        return self.current

    def undo(self) -> dict[str, Any]:
        if not self._past:
            raise RecipeError("nothing to undo")
        self._future.append(self._current)
        self._current = self._past.pop()
        return self.current

    def redo(self) -> dict[str, Any]:
        if not self._future:
            raise RecipeError("nothing to redo")
        self._past.append(self._current)
        self._current = self._future.pop()
        return self.current
