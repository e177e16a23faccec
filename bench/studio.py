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
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from app import adapters as A
from app.cli import build_parser
from app.engines import Engines, build_tracker, settings_from_args
from app.sessions import SessionStore

TARGET_MS = 300.0


def make_clip(num_frames: int = 33, size: tuple[int, int] = (480, 720), seed: int = 0) -> np.ndarray:
    """A textured background with a red ellipse walking right: uint8 [T, H, W, 3]."""
    try:
        from mvideo_core.samples import make_sample

        video, _ = make_sample("shapes", size=size, num_frames=num_frames, seed=seed)
        return video.frames
    except (ImportError, KeyError, TypeError, ValueError):
        pass
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    base = (60 + 40 * np.sin(xx / 17.0) * np.cos(yy / 23.0) + rng.normal(0, 6, (h, w))).clip(0, 255)
    frames = np.repeat(base[None, ..., None], 3, axis=-1).repeat(num_frames, axis=0).astype(np.uint8)
    for t in range(num_frames):
        cx, cy = 150 + 12 * t, 260
        inside = ((xx - cx) / 70.0) ** 2 + ((yy - cy) / 110.0) ** 2 <= 1
        frames[t][inside] = (210, 50, 40)
    return frames


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
        frames = make_clip()
        from mvideo_core.video_io import write_video

        path = write_video(Path(tmp) / "clip.mp4", frames, 8.0)
        summary = A.load_video(engines, session, path)
        assert summary.num_frames == 33 and session.frames.shape[1:3] == (480, 720), session.frames.shape

        # 1. Click-to-mask: the first click creates the object, the next ones refine it (what users feel).
        t0 = time.perf_counter()
        preview, obj_id = A.click(engines, session, 0, 150, 260, True, None)
        first_click = (time.perf_counter() - t0) * 1000
        clicks = [(160, 300, True), (120, 200, True), (300, 260, False), (150, 340, True)]
        refine_times = []
        for i in range(reps):
            x, y, positive = clicks[i % len(clicks)]
            t0 = time.perf_counter()
            preview, _ = A.click(engines, session, 0, x, y, positive, obj_id)
            refine_times.append((time.perf_counter() - t0) * 1000)
        refine = statistics.median(refine_times)
        click_jpeg = jpeg_ms(preview, reps)

        # 2. Edit preview: an edit (keyframe, terrain) re-renders the recipe and the previewed frame.
        A.propagate(engines, session)
        A.start_edit(engines, session, reset=True)
        edit_times = []
        for i in range(reps):
            t0 = time.perf_counter()
            A.add_keyframe(
                engines, session, "1", 2.0 + 0.1 * (i % 5), 1.2 + 0.05 * i, 10 * i, 0, 0, "ease_in_out", "bottom"
            )
            image = A.edit_preview_frame(engines, session, 20)
            edit_times.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            A.set_terrain(engines, session, "1", "uphill", 0.2 + 0.01 * i, 0.5)
            image = A.edit_preview_frame(engines, session, 20)
            edit_times.append((time.perf_counter() - t0) * 1000)
        edit = statistics.median(edit_times)
        scrub, image = ms(lambda: A.edit_preview_frame(engines, session, 12), reps)
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
        "tracker": engines.tracker_status,
    }
    print(f"tracker: {engines.tracker_status}")
    print(f"click (new object)        {first_click:8.1f} ms")
    print(f"click refinement preview  {refine:8.1f} ms  (+ JPEG {click_jpeg:.1f} ms)  target <= {TARGET_MS:g}")
    print(f"edit preview              {edit:8.1f} ms  (+ JPEG {edit_jpeg:.1f} ms)  target <= {TARGET_MS:g}")
    print(f"scrub one edited frame    {scrub:8.1f} ms")
    ok = refine + click_jpeg <= TARGET_MS and edit + edit_jpeg <= TARGET_MS
    targets = {"click_refine_plus_jpeg_ms": TARGET_MS, "edit_preview_plus_jpeg_ms": TARGET_MS}
    print(json.dumps({"bench": "studio", "figures": figures, "targets": targets, "ok": ok}))


if __name__ == "__main__":
    main()
