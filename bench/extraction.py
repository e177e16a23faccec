"""Mask extraction speed, accuracy and memory.

    classic   ClassicTracker on every procedural sample (box prompts on frame 0, both objects of 'shapes'):
              frames per CPU second at 480x720 on one core (cv2 and torch limited to one thread, so CPU time is
              one core's time even on a busy machine; wall clock beside it), mean IoU against the exact masks at
              240x360 and 480x720.
    sam2      Sam2Tracker (transformers) with a random-weight SAM2.1-hiera-tiny architecture: propagation frames
              per CPU second (one thread) at 512 and 1024 px model input.
    memory    peak RSS growth of a SAM2 propagation (subprocess, /proc VmHWM minus the RSS after model load and
              decoded frames) for 60 s vs 10 s of 240x360 video at 8 fps (480 vs 80 frames), with our bounded
              memory window and, side by side, with it disabled (every per-frame output kept, as transformers does).
              Uses the small test architecture at 256 px so the 480-frame run finishes quickly; the window logic
              does not depend on the size. Output masks (bool at video resolution) are included.

Targets: classic >= 25 frames/s and mean IoU >= 0.90; SAM2 memory long <= 1.5x short. Last line: one JSON object.
`--quick` (< 1 min): fewer frames everywhere, SAM2 speed at 512 px only, 8 s vs 4 s of video for memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mvideo_core.extraction.classic import ClassicTracker  # noqa: E402
from mvideo_core.samples import list_samples, make_sample  # noqa: E402

CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
import numpy as np, torch
torch.set_num_threads(1)
from mvideo_core.extraction.sam2_tracker import Sam2Tracker

def rss_kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])

folder, frames_n, window = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
base = rng.integers(0, 255, (240, 360, 3), dtype=np.uint8)
frames = np.stack([np.roll(base, 2 * t, axis=1) for t in range(frames_n)])
tracker = Sam2Tracker(folder, device="cpu", memory_window=window)
session = tracker.start(frames, 8.0)
before = rss_kb("VmRSS:")
# reset the high-water mark so the peak counts only propagation (Linux: write 5 to clear_refs)
open("/proc/self/clear_refs", "w").write("5")
tracker.add_prompt(session, 1, 0, box=[100, 60, 220, 180])
t0 = time.perf_counter()
tracker.propagate(session, show_progress=False)
dt = time.perf_counter() - t0
peak = rss_kb("VmHWM:")
sess = session.engine["sam2"]
state = sum(
    v.numel() * v.element_size()
    for per_obj in sess.output_dict_per_obj.values()
    for kind in per_obj.values()
    for out in kind.values()
    for v in out.values()
    if torch.is_tensor(v)
)
print(json.dumps({{"peak_mib": peak / 1024, "growth_mib": (peak - before) / 1024, "fps": frames_n / dt,
                  "state_mib": state / 2**20, "frames_mib": frames.nbytes / 2**20}}))
"""


def _box(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def bench_classic(size: tuple[int, int], num_frames: int) -> tuple[float, float, dict[str, float], dict[str, float]]:
    """(frames per CPU second and per wall second over all samples, mean IoU over all frames and objects, per-sample
    IoU, per-sample frames per CPU second). One thread, so CPU time is one core's time even on a busy machine."""
    ious, per_sample, per_fps, frames_done, seconds, cpu = [], {}, {}, 0, 0.0, 0.0
    for name in list_samples():
        video, gt = make_sample(name, size=size, num_frames=num_frames)
        tracker = ClassicTracker()
        t0, c0 = time.perf_counter(), time.process_time()
        session = tracker.start(video.frames, video.fps)
        for k in range(gt.num_objects):
            tracker.add_prompt(session, k + 1, 0, box=_box(gt.masks[k, 0]))
        result = tracker.propagate(session, show_progress=False)
        seconds += time.perf_counter() - t0
        cpu += time.process_time() - c0
        frames_done += gt.num_frames
        per_fps[f"{name} ({gt.num_objects} obj)"] = round(gt.num_frames / (time.process_time() - c0), 1)
        scores = []
        for k in range(gt.num_objects):
            for t in range(gt.num_frames):
                union = (result.masks[k, t] | gt.masks[k, t]).sum()
                scores.append(1.0 if union == 0 else (result.masks[k, t] & gt.masks[k, t]).sum() / union)
        per_sample[name] = round(float(np.mean(scores)), 4)
        ious += scores
    return frames_done / cpu, frames_done / seconds, float(np.mean(ious)), per_sample, per_fps


def bench_sam2_fps(image_size: int, steps: int) -> float:
    """Propagation frames/s of the random-weight hiera-tiny architecture at `image_size` px (one CPU thread)."""
    from transformers import Sam2VideoModel

    from mvideo_core.extraction.sam2_tracker import Sam2Tracker, sam2_config

    torch.manual_seed(0)
    model = Sam2VideoModel(sam2_config("hiera-tiny", image_size)).eval()
    tracker = Sam2Tracker(model, device="cpu")
    frames = np.random.default_rng(0).integers(0, 255, (steps + 1, 480, 720, 3), dtype=np.uint8)
    session = tracker.start(frames, 8.0)
    tracker.add_prompt(session, 1, 0, box=[200, 100, 500, 400])
    c0 = time.process_time()
    tracker.propagate(session, show_progress=False)
    return steps / (time.process_time() - c0)


def bench_memory(folder: Path, frames_n: int, window: int) -> dict[str, float]:
    """Peak RSS (total and growth over model + decoded frames), SAM2 state kept and frames/s, in a fresh process."""
    code = CHILD.format(root=str(ROOT))
    out = (
        subprocess.run(
            [sys.executable, "-c", code, str(folder), str(frames_n), str(window)],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    return {k: round(v, 1) for k, v in json.loads(out).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames; finishes in under a minute")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    quick = args.quick
    figures: dict[str, float | dict] = {}

    # 1. Classic tracker
    n = 9 if quick else 33
    fps_720, wall_fps_720, iou_720, per_720, fps_per_720 = bench_classic((480, 720), n)
    _, _, iou_360, per_360, _ = bench_classic((240, 360), n)
    figures.update(
        classic_fps_480x720=round(fps_720, 1),
        classic_fps_480x720_wall=round(wall_fps_720, 1),
        classic_miou_480x720=round(iou_720, 4),
        classic_miou_240x360=round(iou_360, 4),
        classic_miou_per_sample_480x720=per_720,
        classic_fps_per_sample_480x720=fps_per_720,
    )
    print(
        f"classic: {fps_720:.1f} frames per CPU second at 480x720 (1 thread; {wall_fps_720:.1f}/s wall clock), "
        f"mean IoU {iou_720:.3f} (480x720), {iou_360:.3f}"
    )
    print(f"         (240x360); per sample at 480x720: IoU {per_720}, frames per CPU second {fps_per_720}")

    # 2. SAM2 hiera-tiny architecture on the CPU
    for size, steps in ((512, 1),) if quick else ((512, 6), (1024, 3)):  # 1024 px takes ~10 s a frame here
        fps = bench_sam2_fps(size, steps)
        figures[f"sam2_tiny_fps_cpu_{size}"] = round(fps, 3)
        print(
            f"sam2 hiera-tiny (random weights) at {size} px: {fps:.3f} frames/s ({1 / fps:.2f} s/frame), per CPU second, 1 thread"
        )

    # 3. SAM2 memory, long vs short video
    from mvideo_core.extraction.sam2_tracker import save_random_sam2

    short_s, long_s = (4, 8) if quick else (10, 60)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_random_sam2(Path(tmp) / "sam2", "test", image_size=256)
        short = bench_memory(folder, short_s * 8, 17)
        long = bench_memory(folder, long_s * 8, 17)
        unbounded = bench_memory(folder, long_s * 8, 10**9)
    ratio = long["peak_mib"] / short["peak_mib"]
    masks_mib = long_s * 8 * 240 * 360 / 2**20
    figures.update(
        sam2_memory_short=short,
        sam2_memory_long=long,
        sam2_memory_long_without_window=unbounded,
        sam2_memory_ratio_long_over_short=round(ratio, 3),
        sam2_long_result_masks_mib=round(masks_mib, 1),
    )
    print(f"sam2 memory (test arch, 256 px, 240x360 video at 8 fps), {short_s} s vs {long_s} s:")
    for label, m in (("short", short), ("long", long), ("long, no window", unbounded)):
        print(
            f"  {label:16s} peak RSS {m['peak_mib']:7.1f} MiB, growth over model+frames {m['growth_mib']:6.1f} MiB, "
            f"SAM2 state kept {m['state_mib']:6.1f} MiB, decoded frames {m['frames_mib']:6.1f} MiB, {m['fps']} fps"
        )
    print(f"  peak ratio long/short x{ratio:.2f} (the long result's bool masks alone are {masks_mib:.1f} MiB)")

    targets = {
        "classic_fps_480x720": ">= 25",
        "classic_miou": ">= 0.90",
        "sam2_memory_ratio_long_over_short": "<= 1.5",
    }
    ok = fps_720 >= 25 and iou_720 >= 0.90 and iou_360 >= 0.90 and ratio <= 1.5
    print(json.dumps({"bench": "extraction", "figures": figures, "targets": targets, "ok": bool(ok)}))


if __name__ == "__main__":
    main()
