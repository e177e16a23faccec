"""The toy world: procedural text-video clips with exact masks, for training a scale model of MVideo on CPU.

Coloured shapes (several kinds, 8 colours, plain / striped / dotted textures) move over simple textured backgrounds
along pan, uphill, downhill and zoom paths, alone or in pairs, while the camera may pan the background. Every clip
comes with the exact visible mask of each subject (later subjects occlude earlier ones) and a caption naming shape,
colour, motion and background ("a red star moves uphill over a sandy floor").

A `Scene` is a pure description (seeded by `sample_scene`); `render_scene` draws it at any length, so the same
scene gives a 4 s training clip or a 16 s long-video mask sequence. Splits (`SPLITS`) keep held-out shapes and
motions out of every training set and keep the mask-to-video subset's captions narrower (3 colours) than the base
data's (8 colours), mirroring the text bias of the paper's mask-to-video data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from mvideo_core.masks import MaskSet

HEIGHT, WIDTH = 64, 96
FPS = 8.0
CLIP_FRAMES = 33  # 4 s at 8 fps, as the real model

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 40, 40),
    "green": (40, 190, 60),
    "blue": (45, 85, 230),
    "yellow": (240, 220, 40),
    "purple": (160, 60, 200),
    "orange": (245, 140, 25),
    "cyan": (40, 210, 220),
    "white": (245, 245, 245),
}
# background name -> (base RGB, texture kind)
BACKGROUNDS: dict[str, tuple[tuple[int, int, int], str]] = {
    "sandy floor": ((150, 130, 95), "ripples"),
    "grey street": ((95, 95, 100), "stripes"),
    "dark room": ((30, 30, 40), "plain"),
    "night sky": ((15, 20, 55), "stars"),
}
SHAPES = ("square", "circle", "triangle", "star", "diamond", "cross", "ring")
TEXTURES = ("plain", "striped", "dotted")
# motion name -> caption phrase
MOTIONS: dict[str, str] = {
    "right": "moves right",
    "left": "moves left",
    "uphill": "moves uphill",
    "downhill": "moves downhill",
    "zoom_in": "zooms in",
    "zoom_out": "zooms out",
    "wander": "wanders",
    "circle": "moves in a circle",
    "zigzag": "zigzags right",
}


@dataclass(frozen=True)
class Split:
    """Which colours, shapes and motions a data set draws from, and how many clips may hold two subjects."""

    colors: tuple[str, ...]
    shapes: tuple[str, ...]
    motions: tuple[str, ...]
    two_subject_rate: float = 0.25


TRAIN_SHAPES = ("square", "circle", "triangle", "star", "diamond")
# "wander": a random smooth curve per clip (different in every scene), so that the mask-to-video data holds paths
# that no motion word predicts; the held-out circle and zigzag paths are still never seen in training
TRAIN_MOTIONS = ("right", "left", "uphill", "downhill", "zoom_in", "zoom_out", "wander")
MASK_COLORS = ("red", "green", "blue")  # the mask-to-video subset's only colours (the paper's text bias, in small)
HELD_OUT_COLORS = tuple(c for c in COLORS if c not in MASK_COLORS)
SPLITS: dict[str, Split] = {
    "base": Split(tuple(COLORS), TRAIN_SHAPES, TRAIN_MOTIONS),  # stage 2: text-to-video, all colours
    "mask": Split(MASK_COLORS, TRAIN_SHAPES, TRAIN_MOTIONS),  # stage 3: mask-to-video, 3 colours
    "heldout": Split(tuple(COLORS), ("cross", "ring"), ("circle", "zigzag"), 0.0),  # never trained on
    "motion": Split(tuple(COLORS), TRAIN_SHAPES, ("circle", "zigzag"), 0.0),  # trained shapes, held-out motions
    "text": Split(HELD_OUT_COLORS, TRAIN_SHAPES, TRAIN_MOTIONS, 0.0),  # text following on unseen-in-mask colours
}
_SPLIT_SEED = {"base": 1, "mask": 2, "heldout": 3, "text": 4, "motion": 5}


@dataclass(frozen=True)
class Subject:
    """One moving shape. Sizes are radii in pixels at scale 1; paths run over the whole clip (u = 0 .. 1)."""

    shape: str
    color: str
    texture: str
    motion: str
    radius: float
    start: tuple[float, float]  # (x, y) in pixels at u = 0
    angle: float  # rotation in degrees
    spin: float  # degrees per second
    wiggle: tuple[float, ...] = ()  # "wander" only: (ax, ay, fx, fy, phase_x, phase_y, drift_x, drift_y)


@dataclass(frozen=True)
class Scene:
    """A whole clip description; `render_scene(scene, num_frames)` draws it."""

    subjects: tuple[Subject, ...]
    background: str
    camera_pan: float  # background pixels per second (the camera pans)
    seed: int
    height: int = HEIGHT
    width: int = WIDTH

    @property
    def caption(self) -> str:
        return caption_for(self)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Clip:
    """A rendered scene: frames uint8 [T, H, W, 3] RGB, exact masks [K, T, H, W], caption, fps."""

    frames: np.ndarray
    masks: MaskSet
    caption: str
    scene: Scene
    fps: float = FPS
    meta: dict = field(default_factory=dict)


# -- sampling ---------------------------------------------------------------------------------------------------------


def caption_for(scene: Scene, motion: bool = True) -> str:
    """'a red star moves uphill over a sandy floor'; two subjects: 'a red star and a blue circle ... over ...'.
    motion=False leaves the motion out ('a red star over a sandy floor'): the path then comes from the masks only."""
    parts = [f"a {s.color} {s.shape}" for s in scene.subjects]
    if not motion:
        return f"{' and '.join(parts)} over a {scene.background}"
    motion = MOTIONS[scene.subjects[0].motion]
    if len(parts) == 2:
        verb = motion.replace("moves", "move").replace("zooms", "zoom").replace("zigzags", "zigzag")
        verb = verb.replace("wanders", "wander")
        return f"{parts[0]} and {parts[1]} {verb} over a {scene.background}"
    return f"{parts[0]} {motion} over a {scene.background}"


def caption_words() -> list[str]:
    """Every word a caption of this world can use (the toy tokenizer's vocabulary)."""
    words = {"a", "and", "over"}
    for text in [*COLORS, *SHAPES, *BACKGROUNDS, *MOTIONS.values()]:
        words.update(text.split())
    for verb in ("move", "zoom", "zigzag", "wander"):
        words.add(verb)
    return sorted(words)


def _start_for(motion: str, radius: float, rng: np.random.Generator, h: int, w: int) -> tuple[float, float]:
    m = radius + 2
    if motion == "right" or motion == "zigzag":
        return float(rng.uniform(m, w * 0.35)), float(rng.uniform(m + 4, h - m - 4))
    if motion == "left":
        return float(rng.uniform(w * 0.65, w - m)), float(rng.uniform(m + 4, h - m - 4))
    if motion == "uphill":
        return float(rng.uniform(m, w * 0.35)), float(rng.uniform(h * 0.6, h - m))
    if motion == "downhill":
        return float(rng.uniform(m, w * 0.35)), float(rng.uniform(m, h * 0.4))
    return float(rng.uniform(w * 0.3, w * 0.7)), float(rng.uniform(h * 0.35, h * 0.65))


def _wiggle(rng: np.random.Generator, w: int, h: int) -> tuple[float, ...]:
    """Parameters of a random smooth 'wander' path: a drift plus one sinusoid per axis (0.5 to 1.5 periods)."""
    return (
        float(rng.uniform(0.05, 0.2) * w),
        float(rng.uniform(0.05, 0.2) * h),
        float(rng.uniform(0.5, 1.5)),
        float(rng.uniform(0.5, 1.5)),
        float(rng.uniform(0, 2 * np.pi)),
        float(rng.uniform(0, 2 * np.pi)),
        float(rng.uniform(-0.3, 0.3) * w),
        float(rng.uniform(-0.2, 0.2) * h),
    )


def sample_scene(split: str, index: int, *, height: int = HEIGHT, width: int = WIDTH) -> Scene:
    """The `index`-th scene of a split: a pure function of (split, index)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLITS)}")
    if not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"scene index must be a non-negative integer, got {index!r}")
    spec = SPLITS[split]
    seed = _SPLIT_SEED[split] * 1_000_003 + int(index)
    rng = np.random.default_rng(seed)
    n = 2 if rng.random() < spec.two_subject_rate else 1
    motion = str(rng.choice(spec.motions))
    colors = rng.choice(spec.colors, size=n, replace=False)
    subjects = []
    for k in range(n):
        radius = float(rng.uniform(9, 13) if n == 1 else rng.uniform(7, 10))
        if motion == "zoom_in":
            radius *= 0.75
        start = _start_for(motion, radius, rng, height, width)
        if n == 2:  # two subjects travel side by side: the second follows the first along the same path
            gap = 22.0 if motion not in ("zoom_in", "zoom_out") else 26.0
            direction = -1.0 if motion == "left" else 1.0
            if k == 0:
                start = (start[0] + direction * gap / 2, start[1])
            else:
                first = subjects[0].start
                start = (first[0] - direction * gap, first[1] + float(rng.uniform(-4, 4)))
        subjects.append(
            Subject(
                shape=str(rng.choice(spec.shapes)),
                color=str(colors[k]),
                texture=str(rng.choice(TEXTURES)),
                motion=motion,
                radius=radius,
                start=start,
                angle=float(rng.uniform(0, 360)),
                spin=float(rng.choice([0.0, 0.0, rng.uniform(-30, 30)])),
                wiggle=_wiggle(rng, width, height) if motion == "wander" else (),
            )
        )
    background = str(rng.choice(list(BACKGROUNDS)))
    camera_pan = float(rng.choice([0.0, rng.uniform(-6, 6)]))
    return Scene(tuple(subjects), background, camera_pan, seed, height, width)


# -- drawing ----------------------------------------------------------------------------------------------------------


def _path(subject: Subject, u: float, h: int, w: int) -> tuple[float, float, float]:
    """(x, y, scale) of a subject at clip time u in [0, 1]."""
    x0, y0 = subject.start
    span = 0.45 * w
    if subject.motion == "right":
        return x0 + span * u, y0, 1.0
    if subject.motion == "left":
        return x0 - span * u, y0, 1.0
    if subject.motion == "uphill":
        return x0 + span * u, y0 - 0.4 * h * u, 1.0
    if subject.motion == "downhill":
        return x0 + span * u, y0 + 0.4 * h * u, 1.0
    if subject.motion == "zoom_in":
        return x0, y0, 1.0 + 1.2 * u
    if subject.motion == "zoom_out":
        return x0, y0, 1.8 - 1.0 * u
    if subject.motion == "wander":
        ax, ay, fx, fy, px, py, dx, dy = subject.wiggle
        x = x0 + dx * u + ax * (math.sin(2 * math.pi * fx * u + px) - math.sin(px))
        y = y0 + dy * u + ay * (math.sin(2 * math.pi * fy * u + py) - math.sin(py))
        m = subject.radius + 1
        return min(max(x, m), w - m), min(max(y, m), h - m), 1.0
    if subject.motion == "circle":
        r = 0.22 * h
        return x0 + r * math.cos(2 * math.pi * u), y0 + r * math.sin(2 * math.pi * u), 1.0
    if subject.motion == "zigzag":
        return x0 + span * u, y0 + 0.18 * h * math.sin(6 * math.pi * u), 1.0
    raise ValueError(f"unknown motion {subject.motion!r}; choose one of {sorted(MOTIONS)}")


def _polygon(shape: str, r: float, angle: float) -> list[np.ndarray]:
    """Outline polygons (float [N, 2], centred at 0) of a shape; 'ring' gives outer and inner circles."""

    def regular(n: int, radius: float, offset: float = 0.0) -> np.ndarray:
        t = np.deg2rad(angle + offset) + 2 * np.pi * np.arange(n) / n
        return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)

    if shape == "square":
        return [regular(4, r * 1.25, 45)]
    if shape == "diamond":
        pts = regular(4, r * 1.3)
        pts[:, 0] *= 0.75
        return [pts]
    if shape == "triangle":
        return [regular(3, r * 1.35, -90)]
    if shape in ("circle", "ring"):
        return [regular(40, r)] + ([regular(40, r * 0.5)] if shape == "ring" else [])
    if shape == "star":
        outer, inner = regular(5, r * 1.35, -90), regular(5, r * 0.55, -90 + 36)
        return [np.stack([outer, inner], axis=1).reshape(-1, 2)]
    if shape == "cross":
        a, b = r * 1.2, r * 0.42
        pts = np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b], [-a, b]])
        pts = np.concatenate([pts, [[-a, -b], [-b, -b]]])
        t = np.deg2rad(angle)
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        return [pts @ rot.T]
    raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")


def shape_mask(shape: str, cx: float, cy: float, r: float, angle: float, h: int, w: int) -> np.ndarray:
    """bool [H, W]: the pixels whose centre the shape covers (drawn with 1/16-pixel precision)."""
    canvas = np.zeros((h, w), dtype=np.uint8)
    polys = _polygon(shape, r, angle)
    shift = 4
    scaled = [np.round((p + [cx, cy]) * (1 << shift)).astype(np.int32) for p in polys]
    cv2.fillPoly(canvas, [scaled[0]], 1, lineType=cv2.LINE_8, shift=shift)
    for hole in scaled[1:]:
        cv2.fillPoly(canvas, [hole], 0, lineType=cv2.LINE_8, shift=shift)
    return canvas.astype(bool)


def _background(name: str, h: int, w: int, offset: float, rng_seed: int) -> np.ndarray:
    """uint8 [H, W, 3]: a tiled texture shifted horizontally by `offset` pixels (camera pan)."""
    base, kind = BACKGROUNDS[name]
    tile_w = w * 2
    rng = np.random.default_rng(rng_seed)
    img = np.empty((h, tile_w, 3), dtype=np.float32)
    img[:] = base
    if kind == "ripples":  # broad soft bands (a camera pan shows)
        img *= (1.0 + 0.08 * np.sin(2 * np.pi * np.arange(tile_w) / 32.0))[None, :, None]
    elif kind == "stripes":
        cols = np.arange(tile_w)
        img[:, (cols // 12) % 2 == 0] *= 1.15
        img[h - 10 :] *= 0.8
    elif kind == "stars":  # a few dim 2x2 stars
        ys, xs = rng.integers(0, h - 1, 12), rng.integers(0, tile_w - 1, 12)
        for dy in (0, 1):
            for dx in (0, 1):
                img[ys + dy, xs + dx] = (70, 75, 110)
    else:
        img += np.linspace(0, 12, h)[:, None, None]
    shift = int(round(offset)) % tile_w
    img = np.roll(img, -shift, axis=1)[:, :w]
    return np.clip(img, 0, 255).astype(np.uint8)


def _texture(texture: str, color: tuple[int, int, int], h: int, w: int, cx: float, cy: float) -> np.ndarray:
    """float [H, W, 3]: the subject's colour with a texture attached to its centre (brightness within +-20 %)."""
    out = np.empty((h, w, 3), dtype=np.float32)
    out[:] = color
    if texture == "plain":
        return out
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if texture == "striped":
        factor = np.where(((xx - cx + yy - cy) // 4) % 2 == 0, 1.0, 0.8)
    else:
        factor = np.where(((xx - cx) % 5 < 2) & ((yy - cy) % 5 < 2), 0.8, 1.0)
    return out * factor[..., None]


def render_scene(
    scene: Scene, num_frames: int = CLIP_FRAMES, fps: float = FPS, window: tuple[int, int] | None = None
) -> Clip:
    """Draw a scene: frames uint8 [T, H, W, 3] and the exact visible masks bool [K, T, H, W] (later subjects on top).

    `window` (start, stop) draws only those frames of the `num_frames`-frame clip, equal to slicing the full render
    (each frame depends on its index alone), at a fraction of the cost."""
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    start, stop = (0, num_frames) if window is None else window
    if not 0 <= start < stop <= num_frames:
        raise ValueError(f"window must be (start, stop) with 0 <= start < stop <= {num_frames}, got {window!r}")
    h, w = scene.height, scene.width
    k = len(scene.subjects)
    frames = np.empty((stop - start, h, w, 3), dtype=np.uint8)
    masks = np.zeros((k, stop - start, h, w), dtype=bool)
    for j, t in enumerate(range(start, stop)):
        u = t / max(1, num_frames - 1)
        img = _background(scene.background, h, w, scene.camera_pan * t / fps, scene.seed).astype(np.float32)
        for i, subject in enumerate(scene.subjects):
            x, y, scale = _path(subject, u, h, w)
            angle = subject.angle + subject.spin * t / fps
            m = shape_mask(subject.shape, x, y, subject.radius * scale, angle, h, w)
            img[m] = _texture(subject.texture, COLORS[subject.color], h, w, x, y)[m]
            masks[:i, j] &= ~m  # visible masks: a later subject occludes the earlier ones
            masks[i, j] = m
        frames[j] = np.clip(img, 0, 255).astype(np.uint8)
    names = [f"{s.color} {s.shape}" for s in scene.subjects]
    maskset = MaskSet(masks, fps, names=names, meta={"source": "research.toy.world", "seed": scene.seed})
    return Clip(frames, maskset, caption_for(scene), scene, fps)


def make_clip(split: str, index: int, num_frames: int = CLIP_FRAMES, window: tuple[int, int] | None = None) -> Clip:
    """`render_scene(sample_scene(split, index), num_frames, window=window)`."""
    return render_scene(sample_scene(split, index), num_frames, window=window)


# -- colour reading (text following) ------------------------------------------------------------------------------------


def nearest_color(rgb: np.ndarray) -> str:
    """The palette colour name nearest to an RGB triple (Euclidean in RGB)."""
    rgb = np.asarray(rgb, dtype=np.float32).reshape(3)
    names = list(COLORS)
    dist = [float(np.sum((rgb - np.array(COLORS[n], dtype=np.float32)) ** 2)) for n in names]
    return names[int(np.argmin(dist))]


def subject_region(frames: np.ndarray, threshold: float = 60.0) -> np.ndarray:
    """bool [T, H, W]: pixels far (> threshold in RGB) from their frame's median colour (the background dominates),
    a tracker-free reading of where a generated video put its subject."""
    f = np.asarray(frames).astype(np.float32)
    median = np.median(f.reshape(f.shape[0], -1, 3), axis=1)[:, None, None, :]  # [T, 1, 1, 3]
    return np.sqrt(((f - median) ** 2).sum(-1)) > threshold


def subject_color(frames: np.ndarray, masks: np.ndarray | None = None, threshold: float = 60.0) -> str | None:
    """The palette colour of a video's subject: mean colour of the mask region when masks are given, else of the
    pixels far (> threshold in RGB) from each frame's median colour (the background); None when nothing stands out."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got {frames.shape}")
    f = frames.astype(np.float32)
    if masks is not None:
        region = np.asarray(masks, dtype=bool)
        if region.shape != frames.shape[:3]:
            raise ValueError(f"masks {region.shape} must match frames {frames.shape[:3]}")
    else:
        region = subject_region(frames, threshold)
    if region.sum() < 8:
        return None
    return nearest_color(f[region].mean(axis=0))
