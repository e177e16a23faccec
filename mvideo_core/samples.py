"""Procedural sample videos with exact ground-truth masks, for tests, benchmarks and the studio's "try a sample".

Every sample is textured shapes over a textured background seen by a moving camera (pan / zoom), rendered with
hard edges so the masks are exact: a pixel belongs to an object iff the object was painted there, and masks are
the *visible* parts (an occluded part belongs to the object in front). Deterministic by seed. Textures are
multi-scale noise, so dense optical flow and trackers have something to hold on to.

    shapes   a ball and a box crossing: the box passes in front of the ball (partial occlusion); camera pans
    zoom     a kite that grows 3x as it approaches while the camera zooms in
    figure   an articulated stick figure walking and swinging its limbs; the camera follows

`python -m mvideo_core.samples --out assets/samples` regenerates the committed files (mp4 + masks .npz + manifest).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mvideo_core import cli_args
from mvideo_core.budget import add_budget_arguments, budget_from_args
from mvideo_core.clip_spec import COGVIDEOX_CLIP
from mvideo_core.masks import MaskSet, load_masks, save_masks
from mvideo_core.outputs import OutputError, check_writable_dir
from mvideo_core.video_io import Video, read_video, write_video

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "samples"
DEFAULT_SIZE = (240, 360)
DEFAULT_FRAMES = COGVIDEOX_CLIP.clip_frames  # one model clip: 4 s at 8 fps
DEFAULT_FPS = COGVIDEOX_CLIP.fps
_CANVAS = 1.6  # the world is this many frames wide/high, so the camera can move over it


class SampleError(ValueError):
    """A sample name or its files are wrong; the message says what to do."""


class SampleFilesMissing(SampleError, FileNotFoundError):
    """The committed files of a sample are not on disk (callers may fall back to `make_sample`)."""


# -- textures --------------------------------------------------------------------------------------------------


def _noise(rng: np.random.Generator, h: int, w: int, scales: tuple[int, ...]) -> np.ndarray:
    """Multi-scale value noise in [0, 1], float32 [h, w]: blobs at each scale, finest last."""
    total = np.zeros((h, w), dtype=np.float32)
    for i, scale in enumerate(scales):
        small = rng.random((h // scale + 2, w // scale + 2)).astype(np.float32)
        total += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) * (0.6**i)
    total -= total.min()
    return total / max(float(total.max()), 1e-6)


def _texture(rng: np.random.Generator, h: int, w: int, colors: np.ndarray, scales: tuple[int, ...]) -> np.ndarray:
    """uint8 [h, w, 3]: noise mapped through a gradient between `colors` (uint8 [N, 3]), plus fine speckle."""
    value = _noise(rng, h, w, scales)
    stops = np.linspace(0, 1, len(colors))
    image = np.stack([np.interp(value, stops, colors[:, c]) for c in range(3)], axis=-1)
    speckle = (rng.random((h, w, 1)) - 0.5) * 40
    return np.clip(image + speckle, 0, 255).astype(np.uint8)


# -- geometry --------------------------------------------------------------------------------------------------


def _affine(scale: float, angle: float, center_from: tuple[float, float], center_to: tuple[float, float]):
    """2x3 matrix: rotate by `angle` (rad) and scale about `center_from`, landing it on `center_to`."""
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    fx, fy = center_from
    tx, ty = center_to
    return np.array([[c, -s, tx - c * fx + s * fy], [s, c, ty - s * fx - c * fy]], dtype=np.float64)


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """outer o inner for 2x3 affine matrices."""
    a = np.vstack([outer, [0, 0, 1]])
    b = np.vstack([inner, [0, 0, 1]])
    return (a @ b)[:2]


@dataclass
class _Camera:
    """Maps world (canvas) coordinates to the frame: centre path and zoom as functions of u in [0, 1]."""

    center: Callable[[float], tuple[float, float]]
    zoom: Callable[[float], float]

    def matrix(self, u: float, frame: tuple[int, int]) -> np.ndarray:
        h, w = frame
        return _affine(self.zoom(u), 0.0, self.center(u), (w / 2, h / 2))


@dataclass
class _Sprite:
    """A rigid textured object: texture uint8 [S, S, 3] and hard alpha bool [S, S] in its own coordinates."""

    name: str
    texture: np.ndarray
    alpha: np.ndarray
    pose: Callable[[float], tuple[float, float, float, float]]  # u -> (world x, world y, scale, angle)

    def render(self, u: float, camera: np.ndarray, frame: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        h, w = frame
        x, y, scale, angle = self.pose(u)
        size = self.alpha.shape[0]
        matrix = _compose(camera, _affine(scale, angle, (size / 2, size / 2), (x, y)))
        image = cv2.warpAffine(self.texture, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mask = cv2.warpAffine(self.alpha.view(np.uint8), matrix, (w, h), flags=cv2.INTER_NEAREST) > 0
        return image, mask


def _ellipse_alpha(size: int, ry: float) -> np.ndarray:
    alpha = np.zeros((size, size), dtype=np.uint8)
    cv2.ellipse(alpha, (size // 2, size // 2), (int(size * 0.46), int(size * ry)), 0, 0, 360, 1, -1)
    return alpha.astype(bool)


def _polygon_alpha(size: int, points: list[tuple[float, float]]) -> np.ndarray:
    alpha = np.zeros((size, size), dtype=np.uint8)
    cv2.fillPoly(alpha, [np.round(np.array(points) * size).astype(np.int32)], 1)
    return alpha.astype(bool)


_BACKGROUND = np.array([[40, 60, 35], [95, 120, 70], [150, 140, 100], [70, 85, 110], [190, 185, 160]], np.uint8)


def _background(rng: np.random.Generator, frame: tuple[int, int]) -> np.ndarray:
    h, w = frame
    ch, cw = int(h * _CANVAS), int(w * _CANVAS)
    unit = max(2, min(h, w) // 60)
    tex = _texture(rng, ch, cw, _BACKGROUND, (unit * 24, unit * 8, unit * 3, unit))
    # a few soft stripes (like a floor / wall pattern) for larger-scale structure
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    stripes = 0.85 + 0.15 * np.sin((xx * 0.7 + yy * 0.3) / (unit * 9))
    return np.clip(tex * stripes[..., None], 0, 255).astype(np.uint8)


# -- the samples -----------------------------------------------------------------------------------------------


def _scene_shapes(rng: np.random.Generator, frame: tuple[int, int]):
    h, w = frame
    ch, cw = h * _CANVAS, w * _CANVAS
    size = max(32, int(min(h, w) * 0.5))
    unit = max(2, size // 40)
    ball = _Sprite(
        "ball",
        _texture(
            rng, size, size, np.array([[120, 20, 10], [230, 80, 30], [255, 200, 90]], np.uint8), (unit * 6, unit)
        ),
        _ellipse_alpha(size, 0.46),
        lambda u: (cw * (0.3 + 0.4 * u), ch * (0.5 + 0.08 * math.sin(2 * math.pi * u)), 0.8, 0.6 * u),
    )
    box = _Sprite(
        "box",
        _texture(
            rng, size, size, np.array([[10, 30, 110], [40, 110, 220], [150, 220, 255]], np.uint8), (unit * 5, unit)
        ),
        _polygon_alpha(size, [(0.1, 0.15), (0.9, 0.1), (0.85, 0.9), (0.15, 0.85)]),
        lambda u: (cw * (0.72 - 0.42 * u), ch * (0.56 - 0.1 * math.sin(math.pi * u)), 0.7, -0.8 * u),
    )
    camera = _Camera(lambda u: (cw * (0.45 + 0.1 * u), ch * (0.5 + 0.03 * math.sin(2 * math.pi * u))), lambda u: 1.0)
    return camera, [ball, box]  # later sprites are drawn in front


def _scene_zoom(rng: np.random.Generator, frame: tuple[int, int]):
    h, w = frame
    ch, cw = h * _CANVAS, w * _CANVAS
    size = max(32, int(min(h, w) * 0.5))
    unit = max(2, size // 40)
    kite = _Sprite(
        "kite",
        _texture(
            rng, size, size, np.array([[90, 10, 90], [200, 60, 170], [255, 190, 240]], np.uint8), (unit * 6, unit)
        ),
        _polygon_alpha(size, [(0.5, 0.04), (0.92, 0.45), (0.5, 0.96), (0.1, 0.45)]),
        lambda u: (cw * (0.42 + 0.12 * u), ch * (0.55 - 0.08 * u), 0.35 + 0.75 * u, 0.3 * math.sin(2 * math.pi * u)),
    )
    camera = _Camera(lambda u: (cw * (0.47 + 0.05 * u), ch * (0.5 - 0.03 * u)), lambda u: 1.0 + 0.3 * u)
    return camera, [kite]


class _StickFigure:
    """A walking stick figure: head disc, torso, two-segment arms and legs swinging; drawn with thick lines."""

    name = "person"

    def __init__(self, rng: np.random.Generator, frame: tuple[int, int]) -> None:
        h, w = frame
        self.ch, self.cw = h * _CANVAS, w * _CANVAS
        self.height = h * 0.55  # figure height in world pixels
        size = max(32, int(self.height * 1.4))
        unit = max(2, size // 50)
        colors = np.array([[20, 20, 40], [200, 170, 40], [250, 240, 180]], np.uint8)
        self.texture = _texture(rng, size, size, colors, (unit * 5, unit))
        self.phase = float(rng.uniform(0, 2 * math.pi))

    def swing(self, u: float) -> float:
        return math.sin(3 * math.pi * u + self.phase)  # one and a half strides per sample

    def hip(self, u: float) -> tuple[float, float]:
        return self.cw * (0.35 + 0.3 * u), self.ch * 0.55 + self.height * 0.03 * abs(self.swing(u))

    def render(self, u: float, camera: np.ndarray, frame: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        h, w = frame
        s = self.height
        hx, hy = self.hip(u)
        swing = self.swing(u)

        def limb(origin, angle, length):  # angle from straight down, counter-clockwise on screen
            return origin[0] + length * math.sin(angle), origin[1] + length * math.cos(angle)

        neck = (hx + 0.03 * s * swing, hy - 0.4 * s)
        head = (neck[0] + 0.02 * s, neck[1] - 0.13 * s)
        bones = [(neck, (hx, hy))]
        for side in (1, -1):
            thigh = 0.55 * side * swing
            knee = limb((hx, hy), thigh, 0.25 * s)
            foot = limb(knee, thigh - 0.5 * max(0.0, -side * swing), 0.25 * s)  # the back leg bends
            upper = -0.9 * side * swing + 0.25 * side
            elbow = limb(neck, upper, 0.18 * s)
            hand = limb(elbow, upper + 0.7, 0.17 * s)
            bones += [((hx, hy), knee), (knee, foot), (neck, elbow), (elbow, hand)]
        zoom = math.hypot(camera[0, 0], camera[1, 0])

        def to_frame(p):
            x, y = camera @ np.array([p[0], p[1], 1.0])
            return int(round(x)), int(round(y))

        mask = np.zeros((h, w), dtype=np.uint8)
        thickness = max(2, int(round(0.055 * s * zoom)))
        for a, b in bones:
            cv2.line(mask, to_frame(a), to_frame(b), 1, thickness, cv2.LINE_8)
        cv2.circle(mask, to_frame(head), max(2, int(round(0.1 * s * zoom))), 1, -1, cv2.LINE_8)
        size = self.texture.shape[0]
        matrix = _compose(camera, _affine(1.0, 0.0, (size / 2, size / 2), (hx, hy - 0.2 * s)))
        image = cv2.warpAffine(self.texture, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return image, mask.astype(bool)


def _scene_figure(rng: np.random.Generator, frame: tuple[int, int]):
    figure = _StickFigure(rng, frame)
    camera = _Camera(lambda u: (figure.hip(u)[0] * 0.6 + figure.cw * 0.2, figure.ch * 0.47), lambda u: 1.0)
    return camera, [figure]


_SCENES = {"shapes": _scene_shapes, "zoom": _scene_zoom, "figure": _scene_figure}


def list_samples() -> list[str]:
    """Names accepted by `make_sample` / `load_sample`."""
    return list(_SCENES)


def make_sample(
    name: str,
    *,
    size: tuple[int, int] = DEFAULT_SIZE,
    num_frames: int = DEFAULT_FRAMES,
    fps: float = DEFAULT_FPS,
    seed: int = 0,
) -> tuple[Video, MaskSet]:
    """Render sample `name`: frames uint8 [T, H, W, 3] and exact visible masks bool [K, T, H, W]."""
    if name not in _SCENES:
        raise SampleError(f"unknown sample {name!r}; choose one of {list_samples()}")
    h, w = (int(v) for v in size)
    if h < 16 or w < 16:
        raise SampleError(f"sample size must be at least 16x16, got {w}x{h}")
    if int(num_frames) < 1:
        raise SampleError(f"num_frames must be >= 1, got {num_frames}")
    rng = np.random.default_rng([seed, list(_SCENES).index(name)])
    background = _background(rng, (h, w))
    camera, objects = _SCENES[name](rng, (h, w))
    frames = np.empty((num_frames, h, w, 3), dtype=np.uint8)
    masks = np.zeros((len(objects), num_frames, h, w), dtype=bool)
    for t in range(num_frames):
        u = t / max(1, num_frames - 1)
        cam = camera.matrix(u, (h, w))
        image = cv2.warpAffine(background, cam, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        for k, obj in enumerate(objects):
            sprite, mask = obj.render(u, cam, (h, w))
            image[mask] = sprite[mask]
            masks[:k, t] &= ~mask  # what is behind becomes hidden: masks are the visible parts
            masks[k, t] = mask
        frames[t] = image
    meta = {"sample": name, "seed": int(seed), "generator": "mvideo_core.samples"}
    video = Video(frames, fps, source=f"sample:{name}")
    return video, MaskSet(masks, fps, names=[obj.name for obj in objects], meta=meta)


# -- committed files -------------------------------------------------------------------------------------------


def load_sample(name: str, folder: str | Path | None = None) -> tuple[Video, MaskSet]:
    """A committed sample: the decoded mp4 and its exact masks from `assets/samples/`."""
    folder = Path(folder) if folder is not None else SAMPLES_DIR
    if name not in list_samples():
        raise SampleError(f"unknown sample {name!r}; choose one of {list_samples()}")
    video_path, mask_path = folder / f"{name}.mp4", folder / f"{name}_masks.npz"
    if not video_path.is_file() or not mask_path.is_file():
        raise SampleFilesMissing(
            f"sample files for {name!r} are missing from {folder}; regenerate them with "
            "`python -m mvideo_core.samples --out assets/samples`"
        )
    maskset = load_masks(mask_path)
    video = read_video(video_path)
    maskset.check_matches_video(video.num_frames, *video.size)
    return video, maskset


def write_samples(
    out: str | Path,
    *,
    size: tuple[int, int] = DEFAULT_SIZE,
    num_frames: int = DEFAULT_FRAMES,
    fps: float = DEFAULT_FPS,
    seed: int = 0,
    crf: int = 20,
) -> Path:
    """Render every sample into `out` (`<name>.mp4`, `<name>_masks.npz`) with a `manifest.json`; returns it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for name in list_samples():
        video, maskset = make_sample(name, size=size, num_frames=num_frames, fps=fps, seed=seed)
        video_path = write_video(out / f"{name}.mp4", video.frames, fps, crf=crf, preset="slow")
        mask_path = save_masks(maskset, out / f"{name}_masks.npz")
        entries.append(
            {
                "name": name,
                "video": video_path.name,
                "masks": mask_path.name,
                "width": size[1],
                "height": size[0],
                "num_frames": num_frames,
                "fps": fps,
                "seed": seed,
                "objects": [{"id": i, "name": n} for i, n in zip(maskset.ids, maskset.names)],
                "sha256": {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in (video_path, mask_path)},
            }
        )
    manifest = out / "manifest.json"
    doc = {
        "generator": "python -m mvideo_core.samples --out assets/samples",
        "license": "made by this project (procedural), same license as the code",
        "samples": entries,
    }
    manifest.write_text(json.dumps(doc, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mvideo_core.samples", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=SAMPLES_DIR, help="folder to write (default assets/samples)")
    size = cli_args.number(16, 8192, integer=True)
    parser.add_argument("--size", type=size, nargs=2, default=DEFAULT_SIZE, metavar=("H", "W"), help="frame size")
    frames = cli_args.number(1, 3600, integer=True)
    parser.add_argument("--frames", type=frames, default=DEFAULT_FRAMES, help="frames per sample (default 33)")
    parser.add_argument("--fps", type=cli_args.fps, default=DEFAULT_FPS, help="frame rate (default 8)")
    parser.add_argument("--seed", type=cli_args.number(0, 2**32 - 1, integer=True), default=0, help="random seed")
    add_budget_arguments(parser)
    args = parser.parse_args(argv)
    try:
        (h, w), budget = args.size, budget_from_args(args)
        # frames, masks and the float work images of one sample, about 8 bytes a pixel
        budget.check(
            "a sample",
            frames=args.frames,
            height=h,
            width=w,
            itemsize=8,
            hint="pass a smaller --size or fewer --frames",
            error=SampleError,
        )
        check_writable_dir(args.out)
        manifest = write_samples(args.out, size=(h, w), num_frames=args.frames, fps=args.fps, seed=args.seed)
    except (SampleError, OutputError) as err:
        parser.exit(2, f"error: {err}\n")
    total = sum(p.stat().st_size for p in manifest.parent.iterdir() if p.is_file())
    print(f"wrote {len(list_samples())} samples to {manifest.parent} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
