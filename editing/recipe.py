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
2. `timeline` ops, in order, on the layer's own frames (trim, speed, retime, ...).
3. The layer is placed at `start` seconds of the target timeline (absent outside its span unless `extend` is
   "hold" or "loop") and resized to the target (`fit`: crop|letterbox|stretch).
4. `ops`, in order, on the target timeline (times are target seconds in [0, num_frames / fps]): transform,
   terrain, ....
5. Layers are composited bottom (lowest `z`) to top; `occlusion` "full" keeps whole silhouettes, "visible"
   removes pixels covered by higher layers (see editing.composite). Ids are the layers' `id` (default 1, 2, ...).

Every op, its parameters and their checks are declared once in `editing.ops.OPS` (reference: docs/editing.md).
Version 0 (the prototype format: `size`/`fps`/`num_frames` at the top, one mixed `ops` list, keyframes and
offsets in frames) still loads through `migrate`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from editing import timeline
from editing.boxes import box_masks, check_boxes, check_shape
from editing.composite import FITS, OCCLUSIONS, hide_covered, placement_indices
from editing.frames import LayerFrames, fit_matrix
from editing.ops import OPS, CheckContext, Param, RecipeError, RenderContext, check_op, ops_in
from editing.ops import markdown as ops_markdown
from editing.transforms import EditError
from mvideo_core.budget import default_budget
from mvideo_core.masks import MaskSet, load_masks

VERSION = 1


LAYER_PARAMS = (
    Param("id", "integer", "object id of the layer in the output (default: its position, 1, 2, ...)", lo=1),
    Param("name", "string", "the layer's name (default: the source object's)"),
    Param("source", "source", "name of the MaskSet the layer takes its object from (or give `boxes`)"),
    Param(
        "boxes", "boxes", "instead of a source: keyframed boxes [{t, box: [x0, y0, x1, y1]}, ...] (see editing.boxes)"
    ),
    Param(
        "shape",
        "shape",
        'what fills each box: "ellipse", "rounded", "box" or {source, object, frame, fit}',
        default="ellipse",
    ),
    Param("object", "object", 'object id in the source, or "all" (may be left out when the source has one)'),
    Param("z", "number", "stacking order: higher is in front", default=0),
    Param("start", "number", "seconds into the target where the layer starts", default=0.0, lo=-3600, hi=3600),
    Param("speed", "number", "playback speed of the source", default=1.0, positive=True, hi=1000),
    Param("fit", "choice", "how the source is resized to the target", default="crop", choices=FITS),
    Param("extend", "choice", "outside its span", default="none", choices=("none", "hold", "loop")),
    Param("timeline", "ops-list", "timeline ops, in order"),
    Param("ops", "ops-list", "spatial ops, in order"),
)
LAYER_FIELDS = {p.name: p for p in LAYER_PARAMS}
TARGET_FIELDS = {
    p.name: p
    for p in (
        Param("width", "integer", "pixels", required=True, lo=1, hi=8192),
        Param("height", "integer", "pixels", required=True, lo=1, hi=8192),
        Param("fps", "number", "frames per second", required=True, positive=True, hi=240),
        Param("num_frames", "integer", "frames", required=True, lo=1, hi=100_000),
    )
}


def reference_markdown() -> str:
    """The recipe reference (target and layer fields, then every op) as Markdown, for docs/editing.md."""
    lines = ["### Target fields (`target`)", ""]
    lines += [f"- `{p.name}` ({p.describe()}): {p.doc}" for p in TARGET_FIELDS.values()]
    lines += ["", "### Layer fields (`layers[]`)", ""]
    lines += [f"- `{p.name}` ({p.describe()}): {p.doc}" for p in LAYER_PARAMS]
    return "\n".join(lines) + "\n\n" + ops_markdown()


TIMELINE_OPS = ops_in("timeline")
SPATIAL_OPS = ops_in("ops")


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
            is_time = isinstance(op, dict) and op.get("op") in ops_in("timeline")
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
    for k, param in TARGET_FIELDS.items():
        if k not in target:
            raise RecipeError(f"target.{k} is missing; the target needs {list(TARGET_FIELDS)}")
        if msg := param.check(target[k]):
            raise RecipeError(f"target.{k} {msg}")
    if extra := sorted(set(target) - set(TARGET_FIELDS)):
        raise RecipeError(f"target has unknown fields {extra}; known: {list(TARGET_FIELDS)}")
    if msg := Param("occlusion", "choice", "", choices=OCCLUSIONS).check(recipe.get("occlusion", "full")):
        raise RecipeError(f"occlusion {msg}")
    layers = recipe.get("layers")
    if not isinstance(layers, list) or not layers:
        raise RecipeError("'layers' must be a non-empty list; add at least one layer with a 'source'")
    default_budget().check(
        f"the recipe's output ({len(layers)} layer(s) on a {target['width']}x{target['height']} target)",
        frames=target["num_frames"],
        height=target["height"],
        width=target["width"],
        count=len(layers),
        hint="use fewer frames, fewer layers or a smaller size (the model works at 480x720)",
        error=RecipeError,
    )
    ctx = CheckContext(
        duration=target["num_frames"] / target["fps"], fps=target["fps"], size=(target["height"], target["width"])
    )
    ids = []
    for i, lay in enumerate(layers):
        where = f"layers[{i}]"
        if not isinstance(lay, Mapping):
            raise RecipeError(f"{where} must be a dict with at least 'source', got {lay!r}")
        if ("source" in lay) == ("boxes" in lay):
            raise RecipeError(
                f"{where} has {'both' if 'source' in lay else 'no'} 'source' and 'boxes'; a layer takes its object "
                "from a source (the name of a MaskSet) or is drawn as keyframed boxes, one of the two"
            )
        if "shape" in lay and "boxes" not in lay:
            raise RecipeError(f"{where}.shape fills drawn boxes; this layer has a 'source' and no 'boxes'")
        if extra := sorted(set(lay) - set(LAYER_FIELDS)):
            raise RecipeError(f"{where} has unknown fields {extra}; known: {sorted(LAYER_FIELDS)}")
        for k, param in LAYER_FIELDS.items():
            if k in lay and (msg := param.check(lay[k])):
                raise RecipeError(f"{where}.{k} {msg}")
        try:
            if "boxes" in lay:
                _check_box_layer(lay, ctx)
        except EditError as err:
            raise RecipeError(f"{where}.{err}") from None
        ids.append(lay.get("id", i + 1))
        for stage in ("timeline", "ops"):
            ops = lay.get(stage, [])
            if not isinstance(ops, list):
                raise RecipeError(f"{where}.{stage} must be a list of ops, got {ops!r}")
            for j, op in enumerate(ops):
                check_op(op, f"{where}.{stage}[{j}]", stage, ctx)
    if len(set(ids)) != len(ids):
        raise RecipeError(f"layer ids must be unique, got {ids}; set 'id' on each layer")
    return recipe


def _check_box_layer(lay: Mapping[str, Any], ctx: CheckContext) -> None:
    kt, boxes = check_boxes(lay["boxes"], "boxes")
    if kt[0] < 0 or kt[-1] > ctx.duration + 1e-9:
        raise EditError(f"boxes: times {kt[0]:g}..{kt[-1]:g} s must lie in the target's 0..{ctx.duration:.4g} s")
    h, w = ctx.size
    if (
        (boxes[:, [0, 2]] < -w).any()
        or (boxes[:, [0, 2]] > 2 * w).any()
        or (boxes[:, [1, 3]] < -h).any()
        or (boxes[:, [1, 3]] > 2 * h).any()
    ):
        raise EditError(f"boxes must stay within one frame's size of the {w}x{h} canvas")
    check_shape(lay.get("shape", "ellipse"), "shape")


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


def load_sources(pairs: list[str], fps: float | None = None) -> dict[str, MaskSet]:
    """Sources from command-line pairs `NAME=MASKFILE` (any mask format, by extension): name -> MaskSet."""
    sources: dict[str, MaskSet] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise RecipeError(f"--source takes NAME=MASKFILE (the name the recipe uses), got {pair!r}")
        if name in sources:
            raise RecipeError(f"--source {name} is given twice")
        sources[name] = load_masks(path, fps=fps)
    return sources


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


def _box_source(
    lay: Mapping[str, Any], fps: float, n: int, size: tuple[int, int], sources: Mapping[str, MaskSet], where: str
) -> np.ndarray:
    """bool [n, H, W]: the layer's boxes on the target timeline, filled with its shape or chosen silhouette."""
    shape, times = lay.get("shape", "ellipse"), np.arange(n) / fps
    if isinstance(shape, str):
        return box_masks(lay["boxes"], times, size, shape)
    masks, _, _ = _object_masks(sources, shape["source"], shape.get("object"), f"{where}.shape")
    frame = shape.get("frame", 0)
    if frame >= len(masks):
        raise RecipeError(f"{where}.shape.frame {frame} is past the end of {shape['source']!r} ({len(masks)} frames)")
    try:
        return box_masks(lay["boxes"], times, size, silhouette=masks[frame], fit=shape.get("fit", "letterbox"))
    except EditError as err:
        raise RecipeError(f"{where}.shape: frame {frame} of {shape['source']!r}: {err}") from None


def _render_layer(lay: Mapping[str, Any], i: int, ctx: RenderContext, out: np.ndarray) -> tuple[str, list[str]]:
    """Render one layer into zeroed `out` [T, H, W] (its slot of the output); returns its name and its warnings
    (e.g. frames where it leaves the frame)."""
    where = ctx.where = f"layers[{i}]"
    fps, n, size = ctx.fps, ctx.num_frames, ctx.size
    if "boxes" in lay:
        base, base_fps, base_name = _box_source(lay, fps, n, size, ctx.sources, where), fps, "boxes"
    else:
        base, base_fps, base_name = _object_masks(ctx.sources, lay["source"], lay.get("object"), where)
    # 1. Resample to the target fps at the layer's speed; frames are indices into a pool of source clips.
    ctx.pool, ctx.warnings = [base], []
    try:
        seq = timeline.resample_indices(len(base), base_fps, fps, lay.get("speed", 1.0))
    except EditError as err:
        raise RecipeError(f"{where}.speed: {err}") from None
    # 2. Timeline ops on indices (nothing is copied).
    for j, op in enumerate(lay.get("timeline", [])):
        ctx.where = f"{where}.timeline[{j}] ({op['op']})"
        try:
            seq = OPS[op["op"]].apply(seq, op, ctx)
        except EditError as err:
            raise RecipeError(f"{ctx.where}: {err}") from None
    # 3. Place on the target timeline: per target frame a view of its source frame and the resize onto the canvas.
    place = placement_indices(len(seq), n, int(round(lay.get("start", 0.0) * fps)), lay.get("extend", "none"))
    starts = np.cumsum([0] + [len(c) for c in ctx.pool])
    fit = lay.get("fit", "crop")
    resize = [fit_matrix(c.shape[1:], size, fit) for c in ctx.pool]
    views, mats, keys = [None] * n, [None] * n, [None] * n
    for t in np.flatnonzero(place >= 0).tolist():
        g = int(seq[place[t]])
        c = int(np.searchsorted(starts, g, side="right")) - 1
        views[t], mats[t], keys[t] = ctx.pool[c][g - starts[c]], resize[c], (id(ctx.pool[c]), g - starts[c])
    ctx.box_cache.setdefault("clips", []).extend(ctx.pool)  # alive for the render, so their ids stay unique keys
    frames = LayerFrames(size, views, mats, keys, ctx.box_cache, fit)
    # 4. Spatial ops on the target timeline. Affine ops warp the source frames straight into their output (the
    # layer's output slot when they come last); the others work on the frames as an array.
    ops = lay.get("ops", [])
    inside = frames.inside() if ops else None
    for j, op in enumerate(ops):
        ctx.where = f"{where}.ops[{j}] ({op['op']})"
        spec = OPS[op["op"]]
        try:
            if spec.matrices is not None:
                mats = spec.matrices(frames.anchor, n, op, ctx)
                dest = out if j == len(ops) - 1 else np.zeros((n, *size), dtype=bool)
                frames = LayerFrames.from_array(dest, frames.warp(mats, dest))
            else:
                frames = LayerFrames.from_array(np.ascontiguousarray(spec.apply(frames.materialize(), op, ctx)))
        except EditError as err:
            raise RecipeError(f"{ctx.where}: {err}") from None
    if frames.array is not out:
        frames.materialize(out) if frames.array is None else np.copyto(out, frames.array)
    obj_id, name = int(lay.get("id", i + 1)), lay.get("name", base_name)
    if inside is not None and (left := np.flatnonzero(inside & ~frames.inside())).size:
        ctx.warnings.append(
            f"layer {obj_id} ({name}) leaves the frame in frames {_frame_ranges(left)} "
            f"({left[0] / fps:.2f}-{left[-1] / fps:.2f} s): its edits push part of it past the edge, where it is "
            "cut off; move it, scale it down or use a smaller rise"
        )
    return name, ctx.warnings


def _frame_ranges(frames: np.ndarray) -> str:
    """'3-7, 12' for [3, 4, 5, 6, 7, 12]."""
    breaks = np.flatnonzero(np.diff(frames) > 1)
    starts, ends = np.r_[frames[0], frames[breaks + 1]], np.r_[frames[breaks], frames[-1]]
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in zip(starts.tolist(), ends.tolist()))


def render(recipe: Mapping[str, Any], sources: Mapping[str, MaskSet]) -> MaskSet:
    """Replay a recipe on its sources (name -> MaskSet): bool [K, T, H, W] on the target, layers ordered bottom
    (lowest z) to top; deterministic. `meta["warnings"]` lists what the user should know (a layer leaving the
    frame, with the frames)."""
    recipe = validate(recipe)
    if not isinstance(sources, Mapping):
        raise RecipeError(f"sources must be a dict of name -> MaskSet, got {type(sources).__name__}")
    target, layers = recipe["target"], recipe["layers"]
    n, size = int(target["num_frames"]), (int(target["height"]), int(target["width"]))
    ctx = RenderContext(float(target["fps"]), size, n, sources, object_masks=lambda *a: _object_masks(sources, *a))
    order = sorted(range(len(layers)), key=lambda i: layers[i].get("z", 0))  # stable: equal z keeps recipe order
    out = np.zeros((len(layers), n, *size), dtype=bool)  # each layer renders into its slot: no stacking copy
    names, warnings = {}, []
    for k, i in enumerate(order):
        names[i], layer_warnings = _render_layer(layers[i], i, ctx, out[k])
        warnings += layer_warnings
    occlusion = recipe.get("occlusion", "full")
    hide_covered(out, occlusion)
    ids = [int(layers[i].get("id", i + 1)) for i in order]
    meta = {"occlusion": occlusion, "recipe_version": VERSION, "warnings": warnings}
    return MaskSet(out, ctx.fps, ids=ids, names=[names[i] for i in order], meta=meta)


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

    def to_dict(self) -> dict[str, Any]:
        """The whole history as JSON-ready data: {"past": [...], "current": ..., "future": [...]} (recipes)."""
        return {
            "past": [json.loads(t) for t in self._past],
            "current": self.current,
            "future": [json.loads(t) for t in self._future],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], limit: int = 200) -> UndoStack:
        """A history saved by `to_dict`; every recipe in it is validated (a bad one raises `RecipeError`)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("past", []), list):
            raise RecipeError("an undo history is {'past': [...], 'current': recipe, 'future': [...]}")
        stack = cls(data.get("current"), limit=limit)
        stack._past = [dumps(r) for r in data.get("past", [])][-limit:]
        stack._future = [dumps(r) for r in data.get("future", [])]
        return stack
