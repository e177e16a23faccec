"""The edit-op registry: every recipe op is declared once here (name, parameters, checks, renderer, widget hints).

Recipe validation and rendering (`editing.recipe`), the studio's controls and `docs/editing.md` are all derived from
`OPS`; adding an op means adding one `OpSpec` (see the ones below) and nothing elsewhere.
Timeline ops work on a layer's frame indices (one gather at the end), spatial ops on its masks [T, H, W] on the
target canvas and timeline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from editing import cleanup, timeline
from editing.path import check_points, check_scale, follow_path, path_matrices_from
from editing.terrain import ALONG, PROFILES, check_profile, terrain_matrices_from, terrain_warp
from editing.transforms import (
    EASES,
    NAMED_ANCHORS,
    AnchorOf,
    EditError,
    check_anchor,
    check_keyframes,
    keyframed_matrices_from,
    keyframed_transform,
)
from mvideo_core.masks import MaskSet

STAGES = ("timeline", "ops")  # the layer list each op belongs in


class RecipeError(ValueError):
    """A recipe is malformed or cannot be rendered; the message says where (e.g. `layers[1].ops[0]`) and why."""


@dataclass(frozen=True)
class Param:
    """One parameter of an op (or a field of a layer, target or keyframe): its type, range, default and UI hints.

    `kind`: "number", "integer", "choice", "bool", "source" (a source name), "object" (an id or "all"),
    "string", or a structured kind checked by the op's own `check` ("keyframes", "anchor", "points", ...).
    """

    name: str
    kind: str
    doc: str
    required: bool = False
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    positive: bool = False
    choices: tuple = ()
    label: str = ""
    step: float | None = None

    def check(self, value: Any) -> str | None:
        """None when `value` is valid, else what is wrong with it (the caller prefixes where)."""
        if self.kind in ("number", "integer"):
            kinds = (int,) if self.kind == "integer" else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds) or not np.isfinite(value):
                return f"must be {'an integer' if self.kind == 'integer' else 'a number'}, got {value!r}"
            if self.positive and value <= 0:
                return f"must be > 0, got {value!r}"
            if self.lo is not None and value < self.lo:
                return f"must be >= {self.lo}, got {value!r}"
            if self.hi is not None and value > self.hi:
                return f"must be <= {self.hi}, got {value!r}"
        elif self.kind == "choice":
            if value not in self.choices:
                return f"must be one of {list(self.choices)}, got {value!r}"
        elif self.kind == "bool":
            if not isinstance(value, bool):
                return f"must be true or false, got {value!r}"
        elif self.kind == "string":
            if not isinstance(value, str):
                return f"must be a string, got {value!r}"
        elif self.kind == "source":
            if not (isinstance(value, str) and value):
                return f"must be the non-empty name of a source, got {value!r}"
        elif self.kind == "object":
            if not (value == "all" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)):
                return f'must be an object id (integer >= 1) or "all", got {value!r}'
        return None

    def widget(self) -> dict[str, Any]:
        """UI hints: {"widget": "number" | "slider" | "dropdown" | "checkbox" | "text", "label", "value", ...}."""
        hint: dict[str, Any] = {"label": self.label or self.name.replace("_", " ").capitalize(), "value": self.default}
        if self.kind == "choice" or self.kind == "anchor":
            hint["widget"] = "dropdown"
            hint["choices"] = list(self.choices)
        elif self.kind == "bool":
            hint["widget"] = "checkbox"
        elif self.kind in ("number", "integer"):
            bounded = self.lo is not None and self.hi is not None
            hint["widget"] = "slider" if bounded else "number"
            hint.update(minimum=self.lo, maximum=self.hi)
            hint["step"] = self.step if self.step is not None else (1 if self.kind == "integer" else None)
        else:
            hint["widget"] = "text"
        return hint

    def describe(self) -> str:
        """One line for the docs: type, range, default."""
        if self.kind == "choice":
            what = " | ".join(map(str, self.choices))
        elif self.kind in ("number", "integer"):
            lo = "> 0" if self.positive else (f">= {self.lo:g}" if self.lo is not None else "")
            hi = f"<= {self.hi:g}" if self.hi is not None else ""
            what = f"{self.kind} {', '.join(p for p in (lo, hi) if p)}".strip()
        else:
            what = self.kind
        default = "required" if self.required else (f"default {self.default!r}" if self.default is not None else "")
        return f"{what}{'; ' + default if default else ''}"


@dataclass
class CheckContext:
    """What an op's cross-parameter check may need to know about the recipe: the target's length and size."""

    duration: float  # seconds
    fps: float
    size: tuple[int, int]  # (H, W)


@dataclass
class RenderContext:
    """What an op's renderer may use: the target, the recipe's sources, the layer's clip pool and its warnings."""

    fps: float
    size: tuple[int, int]
    num_frames: int
    sources: Mapping[str, MaskSet]
    where: str = ""
    pool: list[np.ndarray] = field(default_factory=list)  # timeline ops: clips the frame indices point into
    warnings: list[str] = field(default_factory=list)
    box_cache: dict = field(default_factory=dict)  # bounding boxes of source frames, shared by a render's layers
    object_masks: Callable[..., tuple[np.ndarray, float, str]] | None = None  # (source, object, where) -> masks


@dataclass(frozen=True)
class OpSpec:
    """One recipe op: `apply(value, op, ctx)` gets frame indices [N] (timeline ops) or bool masks [T, H, W]
    (spatial ops) and returns the same kind; `check(op, ctx)` raises EditError for cross-parameter problems;
    affine ops give `matrices` too."""

    name: str
    stage: str  # "timeline" or "ops"
    doc: str
    params: tuple[Param, ...]
    apply: Callable[[Any, Mapping[str, Any], RenderContext], Any]
    check: Callable[[Mapping[str, Any], CheckContext], None] | None = None
    label: str = ""
    # Affine ops also give their per-frame canvas matrices [T, 2, 3] from the frames' anchors, so a render can
    # fold them into the placement of the source frames and warp each frame once: (anchor_of, count, op, ctx).
    matrices: Callable[[AnchorOf, int, Mapping[str, Any], RenderContext], np.ndarray] | None = None

    @property
    def param(self) -> dict[str, Param]:
        return {p.name: p for p in self.params}

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if p.required)


OPS: dict[str, OpSpec] = {}


def register(spec: OpSpec) -> OpSpec:
    """Add an op to the registry (names are unique across both stages, so a misplaced op can be named)."""
    if spec.name in OPS:
        raise ValueError(f"edit op {spec.name!r} is registered twice")
    if spec.stage not in STAGES:
        raise ValueError(f"edit op {spec.name!r}: stage must be one of {STAGES}, got {spec.stage!r}")
    OPS[spec.name] = spec
    return spec


def ops_in(stage: str) -> dict[str, OpSpec]:
    """The registered ops of one layer list ("timeline" or "ops"), by name."""
    return {name: spec for name, spec in OPS.items() if spec.stage == stage}


def check_op(op: Any, where: str, stage: str, ctx: CheckContext) -> None:
    """Validate one op of a layer's `stage` list; raises RecipeError naming `where`, the parameter and the value."""
    if not isinstance(op, Mapping) or "op" not in op:
        raise RecipeError(f"{where} must be a dict like {{'op': 'reverse'}}, got {op!r}")
    name = op["op"]
    here = ops_in(stage)
    if name not in here:
        other = OPS.get(name) if isinstance(name, str) else None
        hint = f" (that op belongs in the layer's '{other.stage}' list)" if other is not None else ""
        raise RecipeError(f"{where}: unknown op {name!r}{hint}; known ops here: {sorted(here)}")
    spec = here[name]
    unknown = sorted(set(op) - {"op"} - set(spec.param))
    if unknown:
        raise RecipeError(f"{where} ({name}): unknown parameters {unknown}; known: {sorted(spec.param)}")
    for p in spec.required:
        if p not in op:
            raise RecipeError(f"{where} ({name}): missing parameter {p!r}")
    for p, param in spec.param.items():
        if p in op and (msg := param.check(op[p])):
            raise RecipeError(f"{where} ({name}).{p} {msg}")
    if spec.check is not None:
        try:
            spec.check(op, ctx)
        except EditError as err:
            raise RecipeError(f"{where} ({name}){'' if str(err).startswith('.') else ': '}{err}") from None


def _within_target(op: Mapping[str, Any], names: tuple[str, ...], ctx: CheckContext) -> None:
    for p in names:
        if p in op and op[p] > ctx.duration + 1e-9:
            raise EditError(f".{p} = {op[p]} s is outside the target's 0..{ctx.duration:.4g} s")


# -- timeline ops (frame indices) ----------------------------------------------------------------------------------
def _trim_check(op: Mapping[str, Any], ctx: CheckContext) -> None:
    if "end" in op and op["end"] <= op.get("start", 0):
        raise EditError(f"needs start < end, got start={op.get('start', 0)}, end={op['end']}")


def _concat(seq: np.ndarray, op: Mapping[str, Any], ctx: RenderContext) -> np.ndarray:
    other, other_fps, _ = ctx.object_masks(op["source"], op.get("object"), ctx.where)
    extra = timeline.resample_indices(len(other), other_fps, ctx.fps, op.get("speed", 1.0))
    timeline.check_length(len(seq) + len(extra), "concat")
    out = np.concatenate([seq, extra + sum(len(p) for p in ctx.pool)])
    ctx.pool.append(other)
    return out


_TIMES = Param("times", "integer", "how many times", required=True, default=2, lo=1, hi=10_000, label="Times")
register(
    OpSpec(
        "trim",
        "timeline",
        "Keep the layer's frames whose time lies in [start, end) seconds.",
        (
            Param("start", "number", "first second kept", default=0.0, lo=0, label="From (s)"),
            Param("end", "number", "seconds, exclusive; the end when left out", positive=True, label="To (s)"),
        ),
        lambda seq, op, ctx: seq[timeline.trim_indices(len(seq), ctx.fps, op.get("start", 0.0), op.get("end"))],
        _trim_check,
        "Trim",
    )
)
register(
    OpSpec(
        "speed",
        "timeline",
        "Play the layer `factor` x faster (2 = half as many frames).",
        (Param("factor", "number", "playback speed", required=True, default=1.0, positive=True, label="Speed (x)"),),
        lambda seq, op, ctx: seq[timeline.resample_indices(len(seq), ctx.fps, ctx.fps, op["factor"])],
        label="Speed",
    )
)
register(
    OpSpec("reverse", "timeline", "Play the layer backwards.", (), lambda seq, op, ctx: seq[::-1], label="Reverse")
)
register(
    OpSpec(
        "loop",
        "timeline",
        "Repeat the layer's frames `times` times.",
        (_TIMES,),
        lambda seq, op, ctx: seq[timeline.loop_indices(len(seq), times=op["times"])],
        label="Loop",
    )
)
register(
    OpSpec(
        "pingpong",
        "timeline",
        "Forward then backward (end frames not doubled), `times` round trips.",
        (_TIMES,),
        lambda seq, op, ctx: seq[timeline.pingpong_indices(len(seq), times=op["times"])],
        label="Ping-pong",
    )
)
register(
    OpSpec(
        "retime",
        "timeline",
        "Fit the layer's motion to `duration` seconds: round(duration * fps) + 1 frames, as clips are counted.",
        (
            Param(
                "duration", "number", "seconds", required=True, default=4.0, positive=True, hi=3600, label="Seconds"
            ),
            Param("mode", "choice", "how to fill it", default="stretch", choices=timeline.RETIME_MODES, label="Mode"),
        ),
        lambda seq, op, ctx: seq[
            timeline.retime_indices(len(seq), ctx.fps, op["duration"], op.get("mode", "stretch"))
        ],
        label="Retime",
    )
)
register(
    OpSpec(
        "concat",
        "timeline",
        "Append another source's object after the layer's frames.",
        (
            Param("source", "source", "source name", required=True, label="Source"),
            Param("object", "object", "object id or 'all'", label="Object"),
            Param("speed", "number", "its playback speed", default=1.0, positive=True, label="Speed (x)"),
        ),
        _concat,
        label="Append",
    )
)


# -- spatial ops (masks [T, H, W] on the target) -------------------------------------------------------------------
def _transform_check(op: Mapping[str, Any], ctx: CheckContext) -> None:
    keys = check_keyframes(op["keys"], "keys")
    for i, key in enumerate(keys):
        if not 0 <= key["t"] <= ctx.duration + 1e-9:
            raise EditError(f".keys[{i}].t = {key['t']} s is outside the target's 0..{ctx.duration:.4g} s")
    check_anchor(op.get("anchor", "centroid"))


def _terrain_check(op: Mapping[str, Any], ctx: CheckContext) -> None:
    check_profile(op["profile"], op.get("rise", 0.25), op.get("steps", 4), op.get("points"))
    _within_target(op, ("start", "end"), ctx)


def _terrain(masks: np.ndarray, op: Mapping[str, Any], ctx: RenderContext) -> np.ndarray:
    params = {k: v for k, v in op.items() if k not in ("op", "profile")}
    return terrain_warp(masks, ctx.fps, op["profile"], **params)


def _smooth_check(op: Mapping[str, Any], ctx: CheckContext) -> None:
    if op.get("window", 3) % 2 == 0:
        raise EditError(f".window must be odd (3, 5, ...), got {op['window']}")


ANCHOR = Param(
    "anchor",
    "anchor",
    'the point that is moved: "centroid", "bottom" (centroid x, lowest row), "center" of the frame, or [fx, fy] '
    "fractions of the frame",
    default="centroid",
    choices=NAMED_ANCHORS,
    label="Anchor",
)
KEYFRAME_PARAMS = (  # the fields of one transform keyframe (transforms.KEY_FIELDS + t and ease)
    Param("t", "number", "target seconds", required=True, default=0.0, lo=0, label="At time (s)"),
    Param("scale", "number", "zoom about the anchor", default=1.0, positive=True, label="Zoom (x)", step=0.05),
    Param("x", "number", "pan right, pixels", default=0.0, label="Pan x (px)"),
    Param("y", "number", "pan down, pixels", default=0.0, label="Pan y (px)"),
    Param("rotate", "number", "degrees counter-clockwise", default=0.0, label="Rotate (deg)"),
    Param("flip_x", "bool", "mirror left-right", default=False, label="Flip x"),
    Param("flip_y", "bool", "mirror top-bottom", default=False, label="Flip y"),
    Param("ease", "choice", "shape of the segment this key starts", default="linear", choices=EASES, label="Ease"),
)
register(
    OpSpec(
        "transform",
        "ops",
        "Keyframed zoom / pan / rotate / flip about an anchor (camera moves); fields a key leaves out keep the "
        "previous key's value, values hold before the first and after the last key.",
        (
            Param("keys", "keyframes", "keyframes: " + ", ".join(p.name for p in KEYFRAME_PARAMS), required=True),
            ANCHOR,
        ),
        lambda masks, op, ctx: keyframed_transform(masks, ctx.fps, op["keys"], op.get("anchor", "centroid")),
        _transform_check,
        "Camera: keyframed zoom / pan / rotate",
        lambda anchor_of, n, op, ctx: keyframed_matrices_from(
            anchor_of, n, np.arange(n) / ctx.fps, op["keys"], op.get("anchor", "centroid")
        ),
    )
)
PATH_POINT_PARAMS = (  # the fields of one path point
    Param("t", "number", "target seconds", required=True, default=0.0, lo=0, label="At time (s)"),
    Param("x", "number", "pixels from the left", required=True, label="x (px)"),
    Param("y", "number", "pixels from the top", required=True, label="y (px)"),
)


def _path_check(op: Mapping[str, Any], ctx: CheckContext) -> None:
    kt, xy = check_points(op["points"], "points")
    if kt[0] < 0 or kt[-1] > ctx.duration + 1e-9:
        raise EditError(f".points: times {kt[0]:g}..{kt[-1]:g} s must lie in the target's 0..{ctx.duration:.4g} s")
    h, w = ctx.size
    if (xy[:, 0] < -w).any() or (xy[:, 0] > 2 * w).any() or (xy[:, 1] < -h).any() or (xy[:, 1] > 2 * h).any():
        raise EditError(
            f".points must stay within one frame's size of the {w}x{h} canvas (x in {-w}..{2 * w}, y in {-h}..{2 * h})"
        )
    check_scale(op.get("scale", 1.0), len(kt), "scale")
    check_anchor(op.get("anchor", "centroid"))


PATH_OPTIONS = ("anchor", "smooth", "orient", "scale")


def _path(masks: np.ndarray, op: Mapping[str, Any], ctx: RenderContext) -> np.ndarray:
    return follow_path(masks, ctx.fps, op["points"], **{k: op[k] for k in PATH_OPTIONS if k in op})


register(
    OpSpec(
        "path",
        "ops",
        "Drag the layer along a drawn path: its anchor passes through each point at its time, linearly or along a "
        "smooth curve, holding before the first and after the last point; optionally turning with the path's "
        "direction and scaling along it. After a transform or terrain it replaces their movement (the anchor is "
        "put on the path); before them, their offsets are added to it.",
        (
            Param("points", "path-points", "[{t, x, y}, ...]: target seconds and pixels", required=True),
            ANCHOR,
            Param(
                "smooth",
                "bool",
                "a smooth curve through the points instead of straight lines",
                default=False,
                label="Smooth curve",
            ),
            Param("orient", "bool", "turn the silhouette as the path turns", default=False, label="Turn with path"),
            Param("scale", "scale", "a factor, or one per point (interpolated in time)", default=1.0),
        ),
        _path,
        _path_check,
        "Path: drag along a drawn path",
        lambda anchor_of, n, op, ctx: path_matrices_from(
            anchor_of, n, np.arange(n) / ctx.fps, op["points"], **{k: op[k] for k in PATH_OPTIONS if k in op}
        ),
    )
)
register(
    OpSpec(
        "terrain",
        "ops",
        "Carry the subject along another ground line (its ground contact follows the profile; size and shape kept); "
        "the lowest point of the line is the ground it was filmed on.",
        (
            Param("profile", "choice", "ground line", required=True, default="uphill", choices=PROFILES, label="Path"),
            Param(
                "rise",
                "number",
                "climb, fraction of the frame height",
                default=0.25,
                lo=-4,
                hi=4,
                step=0.05,
                label="Slope (rise, fraction of height)",
            ),
            Param("steps", "integer", "stairs: number of steps", default=4, lo=2, label="Steps"),
            Param("points", "points", "polyline: [[progress 0..1, height], ...]"),
            Param(
                "along",
                "choice",
                "progress runs with time or across the frame",
                default="time",
                choices=ALONG,
                label="Along",
            ),
            Param(
                "tilt",
                "number",
                "turn with the slope (fraction of its angle)",
                default=0.0,
                lo=-1,
                hi=1,
                step=0.1,
                label="Tilt with slope",
            ),
            Param("start", "number", "seconds where progress is 0 (default: first frame with the subject)", lo=0),
            Param("end", "number", "seconds where progress is 1 (default: last frame with the subject)", lo=0),
        ),
        _terrain,
        _terrain_check,
        "Terrain",
        lambda anchor_of, n, op, ctx: terrain_matrices_from(
            anchor_of,
            n,
            ctx.size,
            ctx.fps,
            op["profile"],
            **{k: v for k, v in op.items() if k not in ("op", "profile")},
        ),
    )
)
register(
    OpSpec(
        "flip",
        "ops",
        "Mirror the whole layer.",
        (Param("axis", "choice", "x: left-right, y: top-bottom", required=True, default="x", choices=("x", "y")),),
        lambda masks, op, ctx: masks[:, :, ::-1] if op["axis"] == "x" else masks[:, ::-1, :],
        label="Flip",
    )
)
register(
    OpSpec("fill_holes", "ops", "Fill holes inside the silhouette.", (), lambda m, op, ctx: cleanup.fill_holes(m))
)
register(
    OpSpec(
        "remove_specks",
        "ops",
        "Drop pieces smaller than `min_area` pixels.",
        (Param("min_area", "integer", "pixels", required=True, default=30, lo=0, label="Smallest piece (px)"),),
        lambda m, op, ctx: cleanup.remove_specks(m, op["min_area"]),
        label="Remove specks",
    )
)
_RADIUS = Param("radius", "integer", "pixels", required=True, default=2, lo=0, hi=256, label="Radius (px)")
for _name, _doc, _fn, _label in (
    ("dilate", "Grow the silhouette by a disc.", cleanup.dilate, "Grow"),
    ("erode", "Shrink the silhouette by a disc.", cleanup.erode, "Shrink"),
):
    register(OpSpec(_name, "ops", _doc, (_RADIUS,), lambda m, op, ctx, fn=_fn: fn(m, op["radius"]), label=_label))
register(
    OpSpec(
        "smooth",
        "ops",
        "Majority vote over `window` neighbouring frames (removes one-frame flicker).",
        (Param("window", "integer", "frames, odd", default=3, lo=1, hi=99, step=2, label="Window (frames)"),),
        lambda m, op, ctx: cleanup.temporal_smooth(m, op.get("window", 3)),
        _smooth_check,
        "Smooth flicker",
    )
)


def markdown() -> str:
    """The op reference, as a Markdown section (written into docs/editing.md; a test keeps the two equal)."""
    lines = []
    for stage, title in (("timeline", "Timeline ops (`timeline`)"), ("ops", "Spatial ops (`ops`)")):
        lines += [f"### {title}", ""]
        for spec in ops_in(stage).values():
            lines.append(f"- **`{spec.name}`**: {spec.doc}")
            for p in spec.params:
                lines.append(f"  - `{p.name}` ({p.describe()}): {p.doc}")
        lines.append("")
    lines += ["### Transform keyframe fields", ""]
    lines += [f"- `{p.name}` ({p.describe()}): {p.doc}" for p in KEYFRAME_PARAMS]
    lines += ["", "### Path point fields", ""]
    lines += [f"- `{p.name}` ({p.describe()}): {p.doc}" for p in PATH_POINT_PARAMS]
    return "\n".join(lines) + "\n"
