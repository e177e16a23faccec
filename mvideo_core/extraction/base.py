"""Protocols and shared session state of the extraction engines.

A `Grounder` turns a frame and text phrases into boxes. A `Tracker` follows SAM2's session shape: `start` a session on
a video, `add_prompt` (box and/or clicks) for object k on any frame, `propagate` both ways, refine by adding more
prompts (only the frames owned by the changed prompt are recomputed), `remove_object`, and read a `MaskSet` with
`result`. Trackers differ only in how they segment one prompted frame and carry masks to a neighbouring frame.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from mvideo_core import video_io
from mvideo_core.masks import MaskSet

# (done, total, description): called after every processed frame.
ProgressCallback = Callable[[int, int, str], None]


class ExtractionError(ValueError):
    """A prompt, video or setting given to an extraction engine is invalid; the message says what to do."""


class ExtractionCancelled(RuntimeError):
    """`propagate` was cancelled. Frames finished before the cancel keep their masks (see `partial`); the
    interrupted prompts stay pending, so calling `propagate` again finishes the job."""

    def __init__(self, message: str, partial: MaskSet | None = None):
        super().__init__(message)
        self.partial = partial


class CancelToken:
    """A cancel flag checked once per frame; `cancel()` may be called from another thread (e.g. a Stop button)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


def is_cancelled(cancel: CancelToken | threading.Event | Callable[[], bool] | None) -> bool:
    """Accept a `CancelToken`, a `threading.Event` or a zero-argument callable as the cancel signal."""
    if cancel is None:
        return False
    if isinstance(cancel, CancelToken):
        return cancel.cancelled
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


@dataclass
class Detections:
    """Boxes found by a grounder on one frame. `boxes`: float32 [N, 4] xyxy in pixels; `scores`: [N]; `labels`: N."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: list[str]
    frame_idx: int = 0

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.labels = [str(label) for label in self.labels]
        if not (len(self.boxes) == len(self.scores) == len(self.labels)):
            raise ExtractionError(
                f"detections need as many boxes, scores and labels, got {len(self.boxes)}, {len(self.scores)}, "
                f"{len(self.labels)}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def best_per_label(self) -> Detections:
        """The highest-scoring box of every distinct label (what a one-object-per-phrase query wants)."""
        keep: dict[str, int] = {}
        for i, label in enumerate(self.labels):
            if label not in keep or self.scores[i] > self.scores[keep[label]]:
                keep[label] = i
        idx = sorted(keep.values(), key=lambda i: -self.scores[i])
        return Detections(self.boxes[idx], self.scores[idx], [self.labels[i] for i in idx], self.frame_idx)


@runtime_checkable
class Grounder(Protocol):
    """Text -> boxes on one frame (uint8 [H, W, 3] RGB)."""

    def detect(self, frame: np.ndarray, phrases: Sequence[str] | str) -> Detections: ...


@dataclass
class Prompt:
    """What the user gave for one object on one frame: a box (xyxy pixels) and/or clicks (x, y) with labels 1/0."""

    box: np.ndarray | None = None
    points: np.ndarray | None = None  # float32 [P, 2] (x, y) pixels
    labels: np.ndarray | None = None  # int32 [P], 1 = positive, 0 = negative

    def merged(self, other: Prompt) -> Prompt:
        """Refinement: a new box replaces the old one, new clicks add to the old ones."""
        box = other.box if other.box is not None else self.box
        if self.points is None:
            points, labels = other.points, other.labels
        elif other.points is None:
            points, labels = self.points, self.labels
        else:
            points = np.concatenate([self.points, other.points])
            labels = np.concatenate([self.labels, other.labels])
        return Prompt(box, points, labels)


class PackedMasks:
    """bool [T, H, W] kept 8 pixels per byte (`np.packbits` along W), so a long video's masks cost 1/8 of a bool
    array while tracking; `masks[t]` reads or writes one frame as bool [H, W]."""

    def __init__(self, num_frames: int, height: int, width: int):
        self.shape = (num_frames, height, width)
        self._bits = np.zeros((num_frames, height, (width + 7) // 8), np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, t: int) -> np.ndarray:
        return np.unpackbits(self._bits[t], axis=-1, count=self.shape[2]).view(bool)

    def __setitem__(self, t: int, mask: np.ndarray) -> None:
        self._bits[t] = np.packbits(np.asarray(mask, bool), axis=-1)

    def unpack_into(self, out: np.ndarray, chunk: int = 64) -> np.ndarray:
        """Fill `out` bool [T, H, W] a few frames at a time (no full-size temporary)."""
        for t0 in range(0, self.shape[0], chunk):
            out[t0 : t0 + chunk] = np.unpackbits(self._bits[t0 : t0 + chunk], axis=-1, count=self.shape[2]).view(bool)
        return out


# Per-frame state of an object: given by the user, followed with confidence, followed but doubtful, or not found.
FRAME_STATES = ("prompted", "tracked", "uncertain", "lost")
TRACKED_MIN_SCORE = 0.6  # a carried mask scoring below this is `uncertain`
LOST_BELOW_SCORE = 0.25  # ... below this (or empty) `lost`


def frame_state(score: float, empty: bool, prompted: bool = False) -> str:
    """The state of one frame from its score in [0, 1] (trackers define it; see each tracker's `_carry`)."""
    if prompted:
        return "prompted"
    if empty or not score >= LOST_BELOW_SCORE:
        return "lost"
    return "tracked" if score >= TRACKED_MIN_SCORE else "uncertain"


@dataclass
class TrackedObject:
    """One object in a session: its prompts per frame and its masks at video resolution."""

    obj_id: int
    name: str
    masks: PackedMasks  # bool [T, H, W] at video resolution, bit-packed
    done: np.ndarray  # bool [T]: frame has a mask from this object's prompts
    prompts: dict[int, Prompt] = field(default_factory=dict)
    pending: set[int] = field(default_factory=set)  # prompt frames whose region must be (re)propagated
    state: dict[str, Any] = field(default_factory=dict)  # tracker-specific per-object state
    scores: np.ndarray | None = None  # float32 [T]: the tracker's confidence in each frame's mask, in [0, 1]
    empty: np.ndarray | None = None  # bool [T]: the frame's mask is empty

    def __post_init__(self) -> None:
        t = len(self.done)
        self.scores = np.zeros(t, np.float32) if self.scores is None else self.scores
        self.empty = np.ones(t, bool) if self.empty is None else self.empty

    def set_mask(self, t: int, mask: np.ndarray, score: float) -> None:
        """Store frame t's mask (bool [H, W] at video resolution) and its score."""
        self.masks[t] = mask
        self.empty[t] = not mask.any()
        self.scores[t] = float(np.clip(score, 0.0, 1.0)) if np.isfinite(score) else 0.0
        self.done[t] = True

    def frame_states(self) -> list[dict[str, Any]]:
        """`[{"frame", "state", "score"}]` for every frame with a mask (what extraction.json and mask files hold)."""
        return [
            {
                "frame": int(t),
                "state": frame_state(self.scores[t], bool(self.empty[t]), t in self.prompts),
                "score": round(float(self.scores[t]), 3),
            }
            for t in np.flatnonzero(self.done)
        ]


def capped_by_prompt_area(
    obj: TrackedObject, frame_idx: int, mask: np.ndarray, score: float, collapsed: float
) -> float:
    """`score` capped by the mask's area against the nearest prompt frame's (`obj.state["prompt_area"]`): a mask
    shrunk below `collapsed` of it scores in proportion (an engine's own confidence misses such collapses)."""
    ref = obj.state.get("prompt_area", {})
    if ref:
        nearest = min(ref, key=lambda p: abs(p - frame_idx))
        if ref[nearest] > 0:
            score = min(score, float(mask.sum()) / (collapsed * ref[nearest]))
    return score


def state_spans(frames: list[dict[str, Any]], states: Sequence[str]) -> list[tuple[int, int]]:
    """Runs of consecutive frames whose state is in `states`: [(first, last), ...]."""
    spans: list[tuple[int, int]] = []
    for f in frames:
        if f["state"] not in states:
            continue
        if spans and spans[-1][1] == f["frame"] - 1:
            spans[-1] = (spans[-1][0], f["frame"])
        else:
            spans.append((f["frame"], f["frame"]))
    return spans


def _spans_text(spans: list[tuple[int, int]]) -> str:
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


def state_report(name: str, frames: list[dict[str, Any]]) -> list[str]:
    """Sentences for the user about one object's doubtful frames, e.g. "person: lost on frames 8-42: add a click
    there" (empty when every frame is prompted or tracked)."""
    lines = []
    lost, uncertain = state_spans(frames, ("lost",)), state_spans(frames, ("uncertain",))
    if lost:
        lines.append(f"{name}: lost on frames {_spans_text(lost)}: add a click there")
    if uncertain:
        lines.append(f"{name}: uncertain on frames {_spans_text(uncertain)}: check them, add a click where wrong")
    return lines


def state_counts(frames: list[dict[str, Any]]) -> dict[str, int]:
    """How many frames are in each state (all four keys present)."""
    counts = dict.fromkeys(FRAME_STATES, 0)
    for f in frames:
        counts[f["state"]] += 1
    return counts


@dataclass
class TrackerSession:
    """A video being segmented. `frames`: uint8 [T, H, W, 3] RGB on the CPU; `engine` holds tracker-specific state."""

    frames: np.ndarray
    fps: float
    tracker_name: str
    objects: dict[int, TrackedObject] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])


def check_frames(frames: Any, fps: float) -> tuple[np.ndarray, float]:
    """Validate a video for tracking: uint8 [T, H, W, 3] with T >= 1, at least 2x2 pixels, and a positive fps."""
    try:
        frames, fps = video_io.check_frames(frames), video_io.check_fps(fps)
    except video_io.VideoError as err:
        raise ExtractionError(str(err)) from None
    if frames.shape[1] < 2 or frames.shape[2] < 2:
        raise ExtractionError(f"the video is too small to track: frames have shape {tuple(frames.shape)}")
    return frames, fps


def check_prompt(
    session: TrackerSession,
    obj_id: int,
    frame_idx: int,
    box: Sequence[float] | np.ndarray | None,
    points: Sequence[Sequence[float]] | np.ndarray | None,
    labels: Sequence[int] | np.ndarray | None,
) -> Prompt:
    """Validate one prompt against the session's video; boxes are clipped to the frame, clicks must lie inside."""
    t, (h, w) = session.num_frames, session.size
    if not isinstance(obj_id, int | np.integer) or obj_id < 1:
        raise ExtractionError(f"object ids are integers starting at 1, got {obj_id!r}")
    if not isinstance(frame_idx, int | np.integer) or not 0 <= frame_idx < t:
        raise ExtractionError(f"frame {frame_idx} is outside the video, which has frames 0..{t - 1}")
    if box is None and points is None:
        raise ExtractionError("a prompt needs a box and/or clicks; got neither")
    box_arr = None
    if box is not None:
        box_arr = np.asarray(box, dtype=np.float32).reshape(-1)
        if box_arr.shape != (4,) or not np.isfinite(box_arr).all():
            raise ExtractionError(f"a box is 4 finite numbers x0,y0,x1,y1 in pixels, got {box!r}")
        x0, y0, x1, y1 = box_arr
        if x1 <= x0 or y1 <= y0:
            raise ExtractionError(f"the box {box_arr.tolist()} has zero or negative area; give x0 < x1 and y0 < y1")
        clipped = np.array([max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)], dtype=np.float32)
        if clipped[2] - clipped[0] < 1 or clipped[3] - clipped[1] < 1:
            raise ExtractionError(
                f"the box {box_arr.tolist()} lies outside the {w}x{h} frame; boxes are x0,y0,x1,y1 in pixels"
            )
        box_arr = clipped
    pts_arr = lab_arr = None
    if points is not None:
        pts_arr = np.asarray(points, dtype=np.float32).reshape(-1, 2) if len(points) else np.zeros((0, 2), np.float32)
        if len(pts_arr) == 0:
            raise ExtractionError("clicks were given as an empty list; give at least one (x, y) or none at all")
        lab_arr = np.ones(len(pts_arr), np.int32) if labels is None else np.asarray(labels, dtype=np.int32).ravel()
        if lab_arr.shape != (len(pts_arr),) or not np.isin(lab_arr, (0, 1)).all():
            raise ExtractionError(f"click labels must be one 1 (positive) or 0 (negative) per click, got {labels!r}")
        outside = (pts_arr[:, 0] < 0) | (pts_arr[:, 0] >= w) | (pts_arr[:, 1] < 0) | (pts_arr[:, 1] >= h)
        if outside.any():
            raise ExtractionError(f"clicks {pts_arr[outside].tolist()} lie outside the {w}x{h} frame")
        if box_arr is None and not (lab_arr == 1).any() and obj_id not in session.objects:
            raise ExtractionError("a new object needs a box or at least one positive click, got only negative clicks")
    return Prompt(box_arr, pts_arr, lab_arr)


def region_of_prompt(prompt_frames: Sequence[int], p: int, num_frames: int) -> tuple[int, int]:
    """Frames owned by prompt frame `p`: those nearer to `p` than to any other prompt frame (ties go earlier)."""
    before = [q for q in prompt_frames if q < p]
    after = [q for q in prompt_frames if q > p]
    lo = before[-1] + (p - before[-1]) // 2 + 1 if before else 0
    hi = (p + after[0]) // 2 if after else num_frames - 1
    return lo, hi


def span_of_prompt(prompt_frames: Sequence[int], p: int, num_frames: int) -> tuple[int, int]:
    """Frames reached from prompt frame `p` when each prompt is carried both ways up to its neighbouring prompts
    (frames between two prompts get a mask from each side, to be fused)."""
    before = [q for q in prompt_frames if q < p]
    after = [q for q in prompt_frames if q > p]
    return (before[-1] + 1 if before else 0), (after[0] - 1 if after else num_frames - 1)


def plan_sweeps(
    session: TrackerSession, both_sides: bool = False
) -> tuple[dict[int, list[tuple[int, int]]], dict[int, list[tuple[int, int]]]]:
    """Per object, the (prompt frame, last frame) spans to carry forward and backward for its pending prompts: up to
    the midpoint between prompts, or (`both_sides`) up to the neighbouring prompts."""
    forward: dict[int, list[tuple[int, int]]] = {}
    backward: dict[int, list[tuple[int, int]]] = {}
    span = span_of_prompt if both_sides else region_of_prompt
    for obj in session.objects.values():
        frames = sorted(obj.prompts)
        for p in sorted(obj.pending):
            lo, hi = span(frames, p, session.num_frames)
            if hi > p:
                forward.setdefault(obj.obj_id, []).append((p, hi))
            if lo < p:
                backward.setdefault(obj.obj_id, []).append((p, lo))
    return forward, backward


def sweep_steps(spans: dict[int, list[tuple[int, int]]], reverse: bool) -> list[tuple[int, int, list[int]]]:
    """Turn spans into ordered frame steps (src, dst, object ids) so that shared work (a frame's features or optical
    flow) is done once for all objects moving across the same pair of frames."""
    steps: dict[tuple[int, int], list[int]] = {}
    for obj_id, obj_spans in spans.items():
        for start, end in obj_spans:
            rng = range(start, end, -1) if reverse else range(start, end)
            for src in rng:
                dst = src - 1 if reverse else src + 1
                steps.setdefault((src, dst), []).append(obj_id)
    order = sorted(steps, key=lambda s: -s[0] if reverse else s[0])
    return [(src, dst, steps[(src, dst)]) for src, dst in order]


class Tracker:
    """Base of the trackers: prompt bookkeeping, planning, progress and cancellation. Subclasses implement
    `_init_session`, `_segment_prompt` (one prompted frame -> mask) and `_carry` (one step to a neighbour frame)."""

    name: str = "tracker"
    description: str = ""
    # carry each prompt both ways up to its neighbouring prompts (the tracker fuses the two masks of frames between
    # prompts) instead of up to the midpoint
    both_sides: bool = False

    @property
    def input_max_side(self) -> int | None:
        """The longest frame side the tracker makes use of (None: any): callers may decode videos at that size."""
        return None

    # -- engine hooks ----------------------------------------------------------------------------------------
    def _init_session(self, session: TrackerSession) -> None:
        pass

    def _segment_prompt(self, session: TrackerSession, obj: TrackedObject, frame_idx: int) -> tuple[np.ndarray, float]:
        """The mask of `obj` on its prompt frame, bool [H, W] at video resolution, and its score in [0, 1]."""
        raise NotImplementedError

    def _carry(self, session: TrackerSession, src: int, dst: int, obj_ids: list[int], reverse: bool) -> None:
        """Fill frame `dst` of every object in `obj_ids` from frame `src` (`obj.set_mask(dst, mask, score)`)."""
        raise NotImplementedError

    def _forget_object(self, session: TrackerSession, obj_id: int) -> None:
        pass

    def _prepare(self, session: TrackerSession) -> None:
        """Called before each prompt and propagation (e.g. to rebuild engine state after a failure)."""

    def _recover(self, session: TrackerSession) -> None:
        """Called after the engine failed mid-way: leave the session able to run again from its prompts."""

    def _failed(self, session: TrackerSession, what: str, err: Exception) -> ExtractionError:
        """An unexpected engine error as a clear `ExtractionError`; the session is recovered so the next call works."""
        try:
            self._recover(session)
        except Exception:  # recovery is best effort; `_prepare` retries it
            pass
        return ExtractionError(
            f"the {self.name} tracker failed {what}: {type(err).__name__}: {err}. The session keeps its prompts and "
            "the masks made so far; run propagate again (on a machine short of memory: a shorter or smaller video)"
        )

    # -- public API ------------------------------------------------------------------------------------------
    def start(self, frames: np.ndarray, fps: float = 8.0) -> TrackerSession:
        """Open a session on a video: frames uint8 [T, H, W, 3] RGB (kept on the CPU)."""
        frames, fps = check_frames(frames, fps)
        session = TrackerSession(frames=frames, fps=fps, tracker_name=self.name)
        self._init_session(session)
        return session

    def add_prompt(
        self,
        session: TrackerSession,
        obj_id: int,
        frame_idx: int,
        box: Sequence[float] | np.ndarray | None = None,
        points: Sequence[Sequence[float]] | np.ndarray | None = None,
        labels: Sequence[int] | np.ndarray | None = None,
        name: str | None = None,
    ) -> np.ndarray:
        """Add or refine object `obj_id` on `frame_idx`; returns its mask there, bool [H, W]. Call `propagate` next."""
        prompt = check_prompt(session, obj_id, frame_idx, box, points, labels)
        obj_id = int(obj_id)
        frame_idx = int(frame_idx)
        obj = session.objects.get(obj_id)
        if obj is None:
            t, (h, w) = session.num_frames, session.size
            obj = TrackedObject(obj_id, name or f"object {obj_id}", PackedMasks(t, h, w), np.zeros(t, bool), state={})
            session.objects[obj_id] = obj
        elif name:
            obj.name = name
        old = obj.prompts.get(frame_idx)
        obj.prompts[frame_idx] = old.merged(prompt) if old is not None else prompt
        try:
            self._prepare(session)
            segmented = self._segment_prompt(session, obj, frame_idx)
            # (mask, score), or a mask alone from trackers that give no score
            mask, score = segmented if isinstance(segmented, tuple) else (segmented, 1.0)
        except Exception as err:
            if old is None:
                obj.prompts.pop(frame_idx)
                if not obj.prompts:
                    del session.objects[obj_id]
                    self._recover(session)
            else:
                obj.prompts[frame_idx] = old
            if isinstance(err, ExtractionError):
                raise
            raise self._failed(session, f"on the prompt for object {obj_id} on frame {frame_idx}", err) from err
        obj.set_mask(frame_idx, mask, score)
        obj.pending.add(frame_idx)
        return mask

    def propagate(
        self,
        session: TrackerSession,
        reverse: bool | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | threading.Event | Callable[[], bool] | None = None,
        show_progress: bool = True,
    ) -> MaskSet:
        """Carry every pending prompt over the frames it owns: forward, backward (`reverse=None`, default) or one way.

        Only frames nearer to a new/changed prompt than to any other prompt of that object are recomputed. On
        cancel raises `ExtractionCancelled` whose `partial` holds the masks finished so far."""
        try:
            self._prepare(session)
        except Exception as err:
            raise self._failed(session, "while preparing to propagate", err) from err
        forward, backward = plan_sweeps(session, both_sides=self.both_sides)
        plans = []
        if reverse in (None, False):
            plans.append((False, sweep_steps(forward, reverse=False)))
        if reverse in (None, True):
            plans.append((True, sweep_steps(backward, reverse=True)))
        total = sum(len(steps) for _, steps in plans)
        done = 0
        with tqdm(total=total, desc=f"{self.name}: propagate", disable=not show_progress or total == 0) as bar:
            for rev, steps in plans:
                for src, dst, obj_ids in steps:
                    if is_cancelled(cancel):
                        raise ExtractionCancelled(
                            f"propagation cancelled after {done} of {total} frames; finished frames are kept, "
                            "call propagate again to finish",
                            partial=self.result(session),
                        )
                    for obj_id in obj_ids:
                        session.objects[obj_id].scores[dst] = np.nan  # set_mask fills it
                    try:
                        self._carry(session, src, dst, obj_ids, rev)
                    except Exception as err:
                        for obj_id in obj_ids:
                            scores = session.objects[obj_id].scores
                            scores[dst] = 0.0 if np.isnan(scores[dst]) else scores[dst]
                        raise self._failed(session, f"carrying masks from frame {src} to {dst}", err) from err
                    for obj_id in obj_ids:
                        obj = session.objects[obj_id]
                        if np.isnan(obj.scores[dst]):  # a tracker that wrote `obj.masks[dst]` itself: no score
                            mask = obj.masks[dst]
                            obj.set_mask(dst, mask, 1.0 if mask.any() else 0.0)
                    done += 1
                    bar.update(1)
                    if progress is not None:
                        progress(done, total, "propagate backward" if rev else "propagate forward")
        for obj in session.objects.values():
            if reverse is None:
                obj.pending.clear()
        if reverse is not None:
            # one direction only: a prompt is finished once both of its directions ran
            finished = session.engine.setdefault("_half_done", {})
            for obj in session.objects.values():
                for p in list(obj.pending):
                    dirs = finished.setdefault((obj.obj_id, p), set())
                    dirs.add(bool(reverse))
                    if dirs == {False, True}:
                        obj.pending.discard(p)
                        finished.pop((obj.obj_id, p))
        return self.result(session)

    def remove_object(self, session: TrackerSession, obj_id: int) -> None:
        """Forget object `obj_id` and its prompts."""
        if obj_id not in session.objects:
            raise ExtractionError(f"no object {obj_id} in this session; objects: {sorted(session.objects)}")
        del session.objects[obj_id]
        try:
            self._forget_object(session, obj_id)
        except Exception as err:
            raise self._failed(session, f"removing object {obj_id}", err) from err

    def frame_states(self, session: TrackerSession) -> list[dict[str, Any]]:
        """`[{"id", "name", "frames": [{"frame", "state", "score"}]}]` for every object, ids sorted."""
        return [
            {"id": i, "name": session.objects[i].name, "frames": session.objects[i].frame_states()}
            for i in sorted(session.objects)
        ]

    def result(self, session: TrackerSession) -> MaskSet:
        """The session's masks as a `MaskSet` bool [K, T, H, W], ids sorted; `meta` names the tracker."""
        ids = sorted(session.objects)
        t, (h, w) = session.num_frames, session.size
        masks = np.zeros((len(ids), t, h, w), bool)
        for k, i in enumerate(ids):
            session.objects[i].masks.unpack_into(masks[k])
        meta = {"tracker": self.description or self.name, **session.meta}
        if getattr(self, "status", None):
            meta["tracker_status"] = self.status  # e.g. why the weight-free fallback is in use
        meta["prompt_frames"] = {str(i): sorted(session.objects[i].prompts) for i in ids}
        meta["frame_states"] = self.frame_states(session)
        return MaskSet(masks, session.fps, ids=ids, names=[session.objects[i].name for i in ids], meta=meta)
