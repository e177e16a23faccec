"""Studio responsiveness in --tiny-random mode on CPU: click-to-mask refinement preview and edit preview latency.

Calls the studio's adapter functions directly (what a click or an edit runs on the server) on a 33-frame 480x720
clip, and separately the JPEG encoding Gradio adds (the studio sends previews as JPEG) before the image reaches the browser. Targets: <= 300 ms each.
Ends with one JSON line. `--quick` runs fewer repetitions.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# Run as `python bench/studio.py`: the repository root must come before bench/ (which holds bench/editing.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.cli import build_parser  # noqa: E402
from app.engines import Engines, build_tracker, settings_from_args  # noqa: E402
from app.sessions import SessionStore  # noqa: E402
from app.steps import edit as edit_step  # noqa: E402
from app.steps import masks as masks_step  # noqa: E402
from app.steps import video as video_step  # noqa: E402

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


def ms(fn, reps: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), out


def jpeg_ms(image: np.ndarray, reps: int) -> float:
    def encode():
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=90)
        return buf

    return ms(encode, reps)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (< 1 min)")
    opts = parser.parse_args()
    torch.set_num_threads(1)
    reps = 3 if opts.quick else 10

    with tempfile.TemporaryDirectory() as tmp:
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
        t0 = time.perf_counter()
        preview, obj_id = masks_step.click(engines, session, 0, float(xs.mean()), float(ys.mean()), True, None)
        first_click = (time.perf_counter() - t0) * 1000
        inside = points_on(mask0, reps)
        outside = points_on(~mask0, reps, seed=1)
        refine_times = []
        for i in range(reps):
            (x, y), positive = (inside[i], True) if i % 3 != 2 else (outside[i], False)
            t0 = time.perf_counter()
            preview, _ = masks_step.click(engines, session, 0, x, y, positive, obj_id)
            refine_times.append((time.perf_counter() - t0) * 1000)
        refine = statistics.median(refine_times)
        click_jpeg = jpeg_ms(preview, reps)

        # 2. Edit preview: an edit (keyframe, terrain) re-renders the recipe and the previewed frame.
        masks_step.propagate(engines, session)
        edit_step.start_edit(engines, session, reset=True)
        edit_times = []
        for i in range(reps):
            t0 = time.perf_counter()
            edit_step.add_keyframe(
                engines, session, "1", 2.0 + 0.1 * (i % 5), 1.2 + 0.05 * i, 10 * i, 0, 0, "ease_in_out", "bottom"
            )
            image = edit_step.edit_preview_frame(engines, session, 20)
            edit_times.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            edit_step.set_terrain(engines, session, "1", "uphill", 0.2 + 0.01 * i, 0.5)
            image = edit_step.edit_preview_frame(engines, session, 20)
            edit_times.append((time.perf_counter() - t0) * 1000)
        edit = statistics.median(edit_times)
        scrub, image = ms(lambda: edit_step.edit_preview_frame(engines, session, 12), reps)
        edit_jpeg = jpeg_ms(image, reps)

    figures = {
        "click_first_ms": round(first_click, 1),
        "click_refine_ms": round(refine, 1),
        "click_refine_plus_jpeg_ms": round(refine + click_jpeg, 1),
        "edit_preview_ms": round(edit, 1),
        "edit_preview_plus_jpeg_ms": round(edit + edit_jpeg, 1),
        "scrub_frame_ms": round(scrub, 1),
        "jpeg_encode_ms": round(edit_jpeg, 1),
        "frames": 33,
        "size": "480x720",
        "clip": clip_name,
        "tracker": engines.tracker_status.split(". ")[0],
    }
    print(f"{clip_name}, 33 frames at 480x720; tracker: {figures['tracker']}")
    print(f"click (new object)        {first_click:8.1f} ms")
    print(f"click refinement preview  {refine:8.1f} ms  (+ JPEG {click_jpeg:.1f} ms)  target <= {TARGET_MS:g}")
    print(f"edit preview              {edit:8.1f} ms  (+ JPEG {edit_jpeg:.1f} ms)  target <= {TARGET_MS:g}")
    print(f"scrub one edited frame    {scrub:8.1f} ms")
    ok = refine + click_jpeg <= TARGET_MS and edit + edit_jpeg <= TARGET_MS
    targets = {"click_refine_plus_jpeg_ms": TARGET_MS, "edit_preview_plus_jpeg_ms": TARGET_MS}
    print(json.dumps({"bench": "studio", "figures": figures, "targets": targets, "ok": ok}))


if __name__ == "__main__":
    main()
