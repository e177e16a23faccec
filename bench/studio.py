"""Studio responsiveness in --tiny-random mode on CPU: click-to-mask refinement preview and edit preview latency.

Calls the studio's adapter functions directly (what a click or an edit runs on the server) on a 33-frame 480x720
clip, plus the JPEG encoding Gradio adds (the studio sends previews as JPEG) before the image reaches the browser.
Each action is timed with bench/timing.py (warmed up, interleaved, one thread): the targets (<= 300 ms each) gate its
CPU time, the work the server does for the click; wall time, what the user waits, is printed beside it and depends on
the machine's load. Ends with one JSON line; `--quick` runs fewer repetitions.

Busy-neighbour check (`--busy`: a second process burning one core; the 2-core host was already at load ~10), full
runs: refine + JPEG 19.9 / 20.1 CPU ms, edit + JPEG 20.0 / 21.8 ms without / with, ok both times; the refining
click's wall median went 108 -> 294 ms, which is why wall time gates nothing here.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/studio.py`: the repository root must come before bench/ (which holds bench/editing.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import timing

timing.one_thread()

import io
import tempfile
from collections.abc import Callable

import numpy as np
from PIL import Image

from app.cli import build_parser
from app.engines import Engines, build_tracker, settings_from_args
from app.sessions import SessionStore
from app.steps import edit as edit_step
from app.steps import masks as masks_step
from app.steps import video as video_step

TARGET_MS = 300.0


def make_clip(num_frames: int = 33, size: tuple[int, int] = (480, 720)) -> tuple[np.ndarray, np.ndarray, str]:
    """The 'shapes' sample at 480x720: frames uint8 [T, H, W, 3], object 1's frame-0 mask bool [H, W], and a name."""
    from mvideo_core.samples import make_sample

    video, masks = make_sample("shapes", size=size, num_frames=num_frames)
    return video.frames, masks.masks[0, 0], "sample 'shapes'"


def points_on(mask: np.ndarray, n: int, seed: int = 0) -> list[tuple[float, float]]:
    """`n` (x, y) points inside a mask: where a user clicks to refine it."""
    ys, xs = np.nonzero(mask)
    idx = np.random.default_rng(seed).choice(len(xs), size=n, replace=False)
    return [(float(xs[i]), float(ys[i])) for i in idx]


def cpu_and_wall(fn: Callable[[], object], walls: list[float]) -> Callable[[], float]:
    """`fn` as a `timing.measure(clock=None)` variant: returns its thread CPU seconds, keeps its wall seconds."""

    def run() -> float:
        w0, c0 = timing.WALL(), timing.THREAD()
        fn()
        cpu = timing.THREAD() - c0
        walls.append(timing.WALL() - w0)
        return cpu

    return run


def jpeg(image: np.ndarray) -> io.BytesIO:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=90)
    return buf


def measure_actions(actions: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[timing.Timing, float]]:
    """Each action's CPU timing and its median wall seconds (warm-up runs excluded)."""
    walls: dict[str, list[float]] = {name: [] for name in actions}
    runs = timing.measure({n: cpu_and_wall(fn, walls[n]) for n, fn in actions.items()}, repeats, clock=None)
    return {name: (runs[name], float(np.median(walls[name][-repeats:]))) for name in actions}


def main() -> None:
    opts = timing.parser(__doc__).parse_args()
    reps = 3 if opts.quick else 10

    with timing.neighbour(opts), tempfile.TemporaryDirectory() as tmp:
        args = build_parser().parse_args(["--tiny-random", "--projects-dir", tmp])
        settings = settings_from_args(args)
        settings.work_size = (480, 720)  # the model's size, as the acceptance asks
        engines = Engines(settings)
        engines.tracker, engines.tracker_status = build_tracker(args, settings)
        session = SessionStore().get("bench")
        frames, mask0, clip_name = make_clip()
        from mvideo_core.video_io import write_video

        path = write_video(Path(tmp) / "clip.mp4", frames, 8.0)
        summary = video_step.load_video(engines, session, path)
        assert summary.num_frames == 33 and session.frames.shape[1:3] == (480, 720), session.frames.shape

        # 1. Click-to-mask: the first click creates the object, the next ones refine it (what users feel).
        ys, xs = np.nonzero(mask0)
        first: list[float] = []  # its wall seconds
        made: dict[str, object] = {}

        def new_object() -> None:
            made["preview"], made["obj_id"] = masks_step.click(
                engines, session, 0, float(xs.mean()), float(ys.mean()), True, None
            )

        first_cpu = cpu_and_wall(new_object, first)()
        preview, obj_id = made["preview"], made["obj_id"]
        clicks = iter(
            (p, True) if i % 3 != 2 else (q, False)
            for i, (p, q) in enumerate(zip(points_on(mask0, reps + 1), points_on(~mask0, reps + 1, seed=1)))
        )
        last = {"preview": preview}

        def refine() -> None:
            (x, y), positive = next(clicks)
            last["preview"], _ = masks_step.click(engines, session, 0, x, y, positive, obj_id)

        click = measure_actions({"click_refine": refine, "jpeg": lambda: jpeg(last["preview"])}, reps)

        # 2. Edit preview: an edit (keyframe, terrain) re-renders the recipe and the previewed frame.
        masks_step.propagate(engines, session)
        edit_step.start_edit(engines, session, reset=True)
        edits = iter(range(reps + 1))
        terrains = iter(range(reps + 1))
        shown = {"image": edit_step.edit_preview_frame(engines, session, 20)}

        def keyframe() -> None:
            i = next(edits)
            edit_step.add_keyframe(
                engines, session, "1", 2.0 + 0.1 * (i % 5), 1.2 + 0.05 * i, 10 * i, 0, 0, "ease_in_out", "bottom"
            )
            shown["image"] = edit_step.edit_preview_frame(engines, session, 20)

        def terrain() -> None:
            edit_step.set_terrain(engines, session, "1", "uphill", 0.2 + 0.01 * next(terrains), 0.5)
            shown["image"] = edit_step.edit_preview_frame(engines, session, 20)

        edit = measure_actions(
            {
                "edit_keyframe": keyframe,
                "edit_terrain": terrain,
                "scrub_frame": lambda: edit_step.edit_preview_frame(engines, session, 12),
                "jpeg": lambda: jpeg(shown["image"]),
            },
            reps,
        )

    ms = 1e3
    edit_cpu = max(edit["edit_keyframe"][0].min, edit["edit_terrain"][0].min)  # the slower kind of edit gates
    figures = {
        "click_first_cpu_ms": round(first_cpu * ms, 1),
        "click_first_wall_ms": round(first[0] * ms, 1),
        **click["click_refine"][0].figures("click_refine_cpu", digits=1),
        "click_refine_plus_jpeg_cpu_ms": round((click["click_refine"][0].min + click["jpeg"][0].min) * ms, 1),
        "click_refine_wall_median_ms": round(click["click_refine"][1] * ms, 1),
        **edit["edit_keyframe"][0].figures("edit_keyframe_cpu", digits=1),
        **edit["edit_terrain"][0].figures("edit_terrain_cpu", digits=1),
        "edit_preview_plus_jpeg_cpu_ms": round((edit_cpu + edit["jpeg"][0].min) * ms, 1),
        "edit_keyframe_wall_median_ms": round(edit["edit_keyframe"][1] * ms, 1),
        **edit["scrub_frame"][0].figures("scrub_frame_cpu", digits=1),
        **edit["jpeg"][0].figures("jpeg_encode_cpu", digits=1),
        "frames": 33,
    }
    print(f"{clip_name}, 33 frames at 480x720; tracker: {engines.tracker_status.split('. ')[0]}")
    print(f"{'action':24s} {'CPU min ms':>11s} {'CPU median':>11s} {'wall median':>12s}")
    for name, (t, wall) in {**click, **{f"edit {k}": v for k, v in edit.items()}}.items():
        print(f"{name:24s} {t.min * ms:11.1f} {t.median * ms:11.1f} {wall * ms:12.1f}")
    print(f"click (new object): CPU {first_cpu * ms:.1f} ms, wall {first[0] * ms:.1f} ms")
    targets = {
        "click_refine_plus_jpeg_cpu_ms": f"<= {TARGET_MS:g}",
        "edit_preview_plus_jpeg_cpu_ms": f"<= {TARGET_MS:g}",
    }
    timing.finish("studio", figures, targets)


if __name__ == "__main__":
    main()
