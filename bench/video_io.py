"""Decode + resample + resize throughput and peak memory of mvideo_core.video_io on a 1080p 30 fps clip.

Makes a textured, moving 1920x1080 30 fps H.264 clip (10 s; 3 s with --quick) in a temp dir, then decodes it to
8 fps at 480x720 (centre crop) in a fresh subprocess per variant and reports frames/s, the realtime factor
(clip seconds per wall second) and the subprocess's peak RSS (VmHWM from /proc, so imports count too):

    streamed   read_video(fps=8, size=(480, 720)): pts picking, only picked frames converted, swscale resize
    iterate    iter_frames with the same settings, frames consumed one by one (memory independent of length)
    naive      every frame converted to full-size RGB, cv2 resize, then picked (still streaming, no fusion)
    baseline   the same subprocess that only imports numpy/av/cv2/video_io (memory floor)

Targets: streamed faster than real time, peak RSS < 1 GiB. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
import numpy as np, av, cv2
from mvideo_core import video_io
variant, path = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
if variant == "streamed":
    video = video_io.read_video(path, fps=8, size=(480, 720))
    shape = list(video.frames.shape)
elif variant == "iterate":
    count = 0
    for frame in video_io.iter_frames(path, fps=8, size=(480, 720)):
        count += 1
    shape = [count, 480, 720, 3]
elif variant == "naive":
    info = video_io.probe_video(path)
    keep = set(video_io.resample_indices(info.num_frames, info.fps, 8.0).tolist())
    out = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            rgb = frame.to_ndarray(format="rgb24")
            small = video_io.resize_frames(rgb[None], (480, 720))[0]
            if i in keep:
                out.append(small)
    shape = list(np.stack(out).shape)
else:
    shape = []
seconds = time.perf_counter() - t0
status = open("/proc/self/status").read()
hwm_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
print(json.dumps({{"seconds": seconds, "shape": shape, "peak_rss_mib": hwm_kib / 1024}}))
"""


def make_clip(path: Path, seconds: float, fps: int = 30, size=(1080, 1920)) -> None:
    """A textured 1080p clip: a large noise texture panned and a bright disc moving, H.264 veryfast crf 23."""
    h, w = size
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (h // 8 + 40, w // 8 + 80, 3), dtype=np.uint8)
    texture = cv2.resize(small, (small.shape[1] * 8, small.shape[0] * 8), interpolation=cv2.INTER_CUBIC)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for i in range(int(seconds * fps)):
            dx, dy = (i * 2) % 320, (i // 2) % 160
            image = np.ascontiguousarray(texture[dy : dy + h, dx : dx + w])
            cv2.circle(image, (200 + i * 5 % (w - 400), h // 2), 120, (255, 230, 40), -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def run_child(variant: str, clip: Path) -> dict:
    """Run one variant in a fresh interpreter; returns its timing and its own peak RSS (VmHWM, MiB)."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD.format(root=str(ROOT)), variant, str(clip)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 3 s clip instead of 10 s (finishes < 1 min)")
    args = parser.parse_args()
    seconds = 3.0 if args.quick else 10.0

    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip_1080p30.mp4"
        t0 = time.perf_counter()
        make_clip(clip, seconds)
        print(
            f"made {seconds:g} s 1920x1080 30 fps clip ({clip.stat().st_size / 1e6:.1f} MB) in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        results = {name: run_child(name, clip) for name in ("baseline", "streamed", "iterate", "naive")}

    src_frames = int(seconds * 30)
    figures: dict[str, float] = {"clip_seconds": seconds, "source_frames": src_frames}
    print(f"{'variant':10s} {'wall s':>8s} {'src fps':>9s} {'realtime x':>11s} {'peak RSS MiB':>13s}  output")
    for name, res in results.items():
        rss = res["peak_rss_mib"]
        if name == "baseline":
            print(f"{name:10s} {'':>8s} {'':>9s} {'':>11s} {rss:13.0f}  (imports only)")
            figures["baseline_rss_mib"] = round(rss, 1)
            continue
        fps = src_frames / res["seconds"]
        realtime = seconds / res["seconds"]
        print(f"{name:10s} {res['seconds']:8.2f} {fps:9.1f} {realtime:11.2f} {rss:13.0f}  {res['shape']}")
        figures[f"{name}_source_fps"] = round(fps, 1)
        figures[f"{name}_output_fps"] = round(res["shape"][0] / res["seconds"], 1)
        figures[f"{name}_realtime_factor"] = round(realtime, 2)
        figures[f"{name}_peak_rss_mib"] = round(rss, 1)
    figures["speedup_streamed_vs_naive"] = round(results["naive"]["seconds"] / results["streamed"]["seconds"], 2)
    print(
        f"streamed is {figures['speedup_streamed_vs_naive']:.2f}x the naive path; "
        "peak RSS = VmHWM of the child process (whole interpreter, imports included)"
    )
    targets = {"streamed_realtime_factor_min": 1.0, "streamed_peak_rss_mib_max": 1024.0}
    ok = (
        figures["streamed_realtime_factor"] > targets["streamed_realtime_factor_min"]
        and figures["streamed_peak_rss_mib"] < targets["streamed_peak_rss_mib_max"]
    )
    print(json.dumps({"bench": "video_io", "figures": figures, "targets": targets, "ok": bool(ok)}))


if __name__ == "__main__":
    main()
