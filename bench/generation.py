"""Generation cost on CPU, measured side by side in one run.

1. Denoising step cost of MVideo vs base CogVideoX at equal latent size (5b-style 3D RoPE transformer), at the
   paper's sizes scaled down by 2.5 in space: noisy 9x24x36 latents (paper 9x60x90 = 33 frames at 480x720), the
   appearance frame 1x24x36, the motion condition 9x12x20 (paper 32x48 = 256x384 pixels), text 36 tokens (226 scaled
   like the video tokens) and width 8x64 (the paper's width/sequence balance). Clip 0 (mask channel concat only):
   target <= 1.05. Continuation clip (mask + condition tokens; the condition stream is computed once per clip and
   amortised over the steps, as the pipeline does): target <= 1.6.
2. Long video with a tiny random pipeline (64x96, CFG on): time(16 s) / time(4 s) target <= 4.2 and peak memory
   of the 16 s run <= 1.1x that of the 4 s run (each length in its own fresh process: peak RSS).
Times are CPU time of the benchmarking process (`time.process_time`, one thread): on a shared machine wall time
mostly measures the neighbours. Ends with one JSON line; `--quick` uses fewer repetitions and steps.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusers import CogVideoXTransformer3DModel  # noqa: E402

from mvideo_core.transformer import ConditionLatents, MVideoTransformer3DModel  # noqa: E402

TARGETS = {
    "clip0_step_ratio": 1.05,
    "continuation_step_ratio": 1.6,
    "time_16s_over_4s": 4.2,
    "peak_mem_16s_over_4s": 1.1,
}
PAPER_STEPS = 50


def _step_models():
    config = {
        "num_attention_heads": 8,
        "attention_head_dim": 64,
        "in_channels": 16,
        "out_channels": 16,
        "time_embed_dim": 512,
        "text_embed_dim": 64,
        "num_layers": 2,
        "sample_width": 36,
        "sample_height": 24,
        "sample_frames": 33,
        "max_text_seq_length": 36,
        "use_rotary_positional_embeddings": True,
    }
    torch.manual_seed(0)
    base = CogVideoXTransformer3DModel(**config).eval()
    torch.manual_seed(0)
    mvideo = MVideoTransformer3DModel.from_cogvideox(CogVideoXTransformer3DModel(**config).eval())
    with torch.no_grad():  # as trained: non-zero new weights (the cost is the same either way)
        mvideo.mask_proj.weight.normal_(0, 0.01)
        mvideo.condition_embed.gates.fill_(0.5)
    return base, mvideo


@torch.no_grad()
def bench_steps(reps: int) -> dict[str, float]:
    torch.set_num_threads(1)
    base, mvideo = _step_models()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 9, 16, 24, 36, generator=g)  # [B, F, C, H, W]
    text = torch.randn(1, 36, 64, generator=g)
    t = torch.tensor([500])
    mask = torch.randn(1, 9, 16, 24, 36, generator=g)
    cond = ConditionLatents(torch.randn(1, 1, 16, 24, 36, generator=g), torch.randn(1, 9, 16, 12, 20, generator=g))
    rope = mvideo.rotary_embeddings(9, 12, 18)

    def timed(fn) -> float:
        t0 = time.process_time()
        fn()
        return time.process_time() - t0

    runs = {"base": [], "clip0": [], "continuation": [], "cache": [], "uncached": []}
    cache = mvideo.condition_cache(cond, 12, 18)
    for _ in range(reps):  # interleaved so that load changes hit all variants alike
        runs["base"].append(timed(lambda: base(x, text, t, image_rotary_emb=rope)))
        runs["clip0"].append(timed(lambda: mvideo(x, text, t, image_rotary_emb=rope, mask_latents=mask)))
        runs["continuation"].append(
            timed(lambda: mvideo(x, text, t, image_rotary_emb=rope, mask_latents=mask, condition_latents=cache))
        )
        runs["cache"].append(timed(lambda: mvideo.condition_cache(cond, 12, 18)))
        runs["uncached"].append(
            timed(lambda: mvideo(x, text, t, image_rotary_emb=rope, mask_latents=mask, condition_latents=cond))
        )
    med = {k: statistics.median(v) for k, v in runs.items()}
    continuation = med["continuation"] + med["cache"] / PAPER_STEPS  # the cache is built once per clip
    return {
        "base_step_s": med["base"],
        "clip0_step_s": med["clip0"],
        "continuation_step_s": continuation,
        "condition_cache_s": med["cache"],
        "clip0_step_ratio": med["clip0"] / med["base"],
        "continuation_step_ratio": continuation / med["base"],
        "uncached_continuation_step_ratio": med["uncached"] / med["base"],
    }


def child(mode: str, seconds: int, steps: int, reps: int, out: str) -> None:
    """Long-video runs in this (fresh) process, printed as JSON.

    mode "time": after a warm-up, alternate 4 s and 16 s runs `reps` times (load changes hit both alike).
    mode "memory": one run of `seconds`; peak RSS of the process.
    """
    torch.set_num_threads(1)
    from mvideo_core.long_video import generate_long_video
    from mvideo_core.masks import MaskSet
    from mvideo_core.tiny import tiny_pipeline

    pipe = tiny_pipeline("5b", seed=0)
    m = np.zeros((1, 8 * 16 + 1, 64, 96), dtype=bool)
    for i in range(m.shape[1]):
        m[0, i, 16:48, (i % 60) : (i % 60) + 30] = True
    masks = MaskSet(m, fps=8.0)

    def run(secs: int, folder: str) -> tuple[float, list[float]]:
        t0 = time.process_time()
        results = list(
            generate_long_video(
                pipe,
                "a dog running",
                out_dir=folder,
                seconds=secs,
                masks=masks,
                num_inference_steps=steps,
                progress=False,
            )
        )
        return time.process_time() - t0, [r.seconds for r in results[:-1]]

    if mode == "memory":
        run(seconds, out)
        print(json.dumps({"peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
        return
    run(4, f"{out}/warmup")  # first-call costs (allocator, lazy init) are not part of the figure
    times: dict[int, list[float]] = {4: [], 16: []}
    clips: list[float] = []
    for r in range(reps):
        for secs in (4, 16):
            elapsed, clip_seconds = run(secs, f"{out}/{secs}-{r}")
            times[secs].append(elapsed)
            if secs == 16:
                clips = clip_seconds
    print(json.dumps({"times": times, "clip_seconds": clips}))


def _child(*args: str) -> dict:
    cmd = [sys.executable, __file__, "--child", *args]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


def bench_long(steps: int, reps: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        timing = _child("time", "16", str(steps), str(reps), f"{tmp}/time")
        memory = {secs: _child("memory", str(secs), str(steps), "1", f"{tmp}/mem{secs}") for secs in (4, 16)}
    t4, t16 = statistics.median(timing["times"]["4"]), statistics.median(timing["times"]["16"])
    clips = timing["clip_seconds"]
    return {
        "time_4s_s": t4,
        "time_16s_s": t16,
        "time_16s_over_4s": t16 / t4,
        "peak_mem_4s_mb": memory[4]["peak_rss_kb"] / 1024,
        "peak_mem_16s_mb": memory[16]["peak_rss_kb"] / 1024,
        "peak_mem_16s_over_4s": memory[16]["peak_rss_kb"] / memory[4]["peak_rss_kb"],
        # clip cost in the 16 s run: continuation clips (conditions) vs clip 0, and last vs first continuation
        "continuation_clip_over_clip0": statistics.mean(clips[1:]) / clips[0],
        "last_over_first_continuation_clip": clips[-1] / clips[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and steps (< 1 min)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps per clip in the long-video runs")
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, seconds, steps, reps, out = sys.argv[2:7]
        child(mode, int(seconds), int(steps), int(reps), out)
        return
    args = parser.parse_args()
    reps, steps = (2, 2) if args.quick else (7, 20)
    steps = args.steps or steps
    figures = bench_steps(reps)
    print(f"step cost (5b-style, scaled paper sizes, 1 thread): base {figures['base_step_s'] * 1e3:.0f} ms")
    print(f"  clip 0, mask concat:              x{figures['clip0_step_ratio']:.3f}  (target <= 1.05)")
    print(
        f"  continuation, cached conditions:  x{figures['continuation_step_ratio']:.3f}  (target <= 1.6; "
        f"condition stream {figures['condition_cache_s'] * 1e3:.0f} ms once per clip, /{PAPER_STEPS} steps)"
    )
    print(f"  continuation, uncached (training): x{figures['uncached_continuation_step_ratio']:.3f}")
    figures.update(bench_long(steps, 1 if args.quick else 3))
    print(
        f"long video, tiny pipeline, {steps} steps, CFG: 4 s {figures['time_4s_s']:.1f} s, 16 s {figures['time_16s_s']:.1f} s"
        f" -> x{figures['time_16s_over_4s']:.2f} (target <= 4.2)"
    )
    print(
        f"  peak memory 4 s {figures['peak_mem_4s_mb']:.0f} MB, 16 s {figures['peak_mem_16s_mb']:.0f} MB -> "
        f"x{figures['peak_mem_16s_over_4s']:.3f} (target <= 1.1)"
    )
    print(
        f"  per clip: continuation / clip 0 x{figures['continuation_clip_over_clip0']:.2f}, "
        f"last / first continuation x{figures['last_over_first_continuation_clip']:.2f} (flat = linear in length)"
    )
    ok = all(figures[k] <= v for k, v in TARGETS.items())
    rounded = {k: round(v, 4) for k, v in figures.items()}
    print(json.dumps({"bench": "generation", "figures": rounded, "targets": TARGETS, "ok": ok}))


if __name__ == "__main__":
    main()
