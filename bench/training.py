"""Training step cost of the consistency loss (paper eq. 2): optimizer steps with L_d + L_c against L_d alone.

The teacher is the same module in `teacher_mode()`, one extra forward without grad, so a step with L_c should cost
at most 1.5x a step without it. Measured on a small random CogVideoX (4 layers, 4 heads x 32, batch 4 on 9x8x12
latents, with mask and both long-video conditions) through the real trainer, with and without gradient
checkpointing, on bench/timing.py: each variant warmed up, then the two run interleaved step by step (A B A B ...),
timed on one thread's CPU clock; the ratio gated is the median of the paired per-step ratios (min and median of each
variant printed beside). Peak memory of one step is measured per variant in a fresh subprocess (CUDA: max allocated;
CPU: peak RSS growth over the loaded model, with glibc returning every tensor buffer on free), and the activations
autograd saves for backward are counted exactly. Ends with one JSON line; `--quick` runs fewer steps.

Busy-neighbour check, `--quick` on the shared 2-core host (load average 10-13 from other work): without `--busy`
ratio_ckpt 1.15, ratio_no_ckpt 1.29; with `--busy` (a second process burning one core) 1.07 and 1.23: ok both times.
The old wall-clock blocks read 4.98 and 1.25 for ratio_no_ckpt in two runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import timing

timing.one_thread()

import torch

TARGET_RATIO = 1.5
BENCH_TRANSFORMER = dict(num_layers=4, num_attention_heads=4, attention_head_dim=32, time_embed_dim=64)


def make_base(folder: Path) -> str:
    """A tiny base model folder whose transformer is the bench size (VAE/T5/scheduler from mvideo_core.tiny)."""
    from diffusers import CogVideoXTransformer3DModel

    from mvideo_core.tiny import TINY_CONFIGS, save_tiny_base_model

    save_tiny_base_model(folder, "2b")
    torch.manual_seed(0)
    config = {**TINY_CONFIGS["2b"]["transformer"], **BENCH_TRANSFORMER}
    CogVideoXTransformer3DModel(**config).save_pretrained(folder / "transformer", safe_serialization=True)
    return str(folder)


def make_trainer(workdir: Path, base: str, alpha: float, checkpointing: bool):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_training_trainer import make_config, write_tiny_cache

    from mvideo_core.training.dataset import collate_samples
    from mvideo_core.training.trainer import MVideoTrainer

    cache = workdir / "cache"
    if not cache.exists():
        write_tiny_cache(cache, base, num_samples=8, conditions=True)
    cfg = make_config(
        workdir / f"a{alpha}-c{int(checkpointing)}",
        base,
        str(cache),
        consistency_weight=alpha,
        gradient_checkpointing=checkpointing,
        train_batch_size=4,
        lora_rank=16,
        lora_alpha=16,
    )
    trainer = MVideoTrainer(cfg).setup()
    return trainer, collate_samples([trainer.dataset[i] for i in range(4)])


def one_step(trainer, batch, k: int) -> None:
    terms = trainer.compute_loss(batch, k)
    trainer.accelerator.backward(terms.total)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)


def saved_activation_mib(trainer, batch) -> float:
    """MiB of tensors autograd keeps for the backward of one loss (what grows with model and clip size)."""
    weights = {p.untyped_storage().data_ptr() for p in trainer.model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights:  # weights saved for the input gradient are not activations
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        terms = trainer.compute_loss(batch)
    trainer.accelerator.backward(terms.total)
    trainer.optimizer.zero_grad(set_to_none=True)
    return sum(seen.values()) / 2**20


def memory_child(base: str, workdir: str, alpha: float, checkpointing: bool) -> None:
    """Subprocess: set up, one warm-up step, then the peak memory of two more steps."""
    trainer, batch = make_trainer(Path(workdir), base, alpha, checkpointing)
    one_step(trainer, batch, 0)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        for k in range(1, 3):
            one_step(trainer, batch, k)
        peak = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        before = timing.rss_mib("VmRSS")
        timing.reset_peak_rss()
        for k in range(1, 3):
            one_step(trainer, batch, k)
        peak = timing.rss_mib("VmHWM") - before
    print(json.dumps({"peak_mib": peak}))


def measure_memory(base: str, workdir: Path, alpha: float, checkpointing: bool) -> float:
    cmd = [sys.executable, __file__, "--child", base, str(workdir), str(alpha), str(int(checkpointing))]
    # glibc: every tensor buffer from its own mmap, returned on free, so the peak RSS follows the live tensors
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "16384", "MALLOC_TRIM_THRESHOLD_": "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout.strip().splitlines()[-1]
    return float(json.loads(out)["peak_mib"])


def main() -> None:
    parser = timing.parser(__doc__)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.child:
        base, workdir, alpha, ckpt = args.child
        memory_child(base, workdir, float(alpha), bool(int(ckpt)))
        return
    repeats = 6 if args.quick else 15
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, timing.neighbour(args):
        workdir = Path(tmp)
        base = make_base(workdir / "base")
        print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, torch threads: {torch.get_num_threads()}")
        print(f"model: CogVideoX {BENCH_TRANSFORMER}, batch 4, latents 9x8x12 (+ mask, appearance, motion)")
        for ckpt in (True, False):
            tag = "ckpt" if ckpt else "no_ckpt"
            runs = {a: make_trainer(workdir, base, a, ckpt) for a in (0.0, 1.0)}
            counters = {0.0: 0, 1.0: 0}

            def step(alpha: float, runs=runs, counters=counters) -> None:
                counters[alpha] += 1
                one_step(*runs[alpha], counters[alpha])

            times = timing.measure({"l_d": lambda: step(0.0), "l_d_l_c": lambda: step(1.0)}, repeats=repeats)
            figures.update(times["l_d"].figures(f"step_without_lc_{tag}"))
            figures.update(times["l_d_l_c"].figures(f"step_with_lc_{tag}"))
            figures.update(timing.ratio(times["l_d_l_c"], times["l_d"]).figures(f"ratio_{tag}", digits=3))
            m0, m1 = (measure_memory(base, workdir, a, ckpt) for a in (0.0, 1.0))
            s0, s1 = (saved_activation_mib(*runs[a]) for a in (0.0, 1.0))
            figures.update(
                {
                    f"peak_mib_without_lc_{tag}": round(m0, 1),
                    f"peak_mib_with_lc_{tag}": round(m1, 1),
                    f"saved_activations_mib_without_lc_{tag}": round(s0, 2),
                    f"saved_activations_mib_with_lc_{tag}": round(s1, 2),
                }
            )
            print(
                f"checkpointing {ckpt}: L_d {times['l_d'].min * 1e3:.1f} ms (median {times['l_d'].median * 1e3:.1f}), "
                f"L_d+L_c {times['l_d_l_c'].min * 1e3:.1f} ms (median {times['l_d_l_c'].median * 1e3:.1f}), "
                f"ratio {figures[f'ratio_{tag}']}; peak MiB {m0:.1f} / {m1:.1f}; saved MiB {s0:.2f} / {s1:.2f}"
            )
    targets = {"ratio_ckpt": f"<= {TARGET_RATIO}", "ratio_no_ckpt": f"<= {TARGET_RATIO}"}
    timing.finish("training", figures, targets)


if __name__ == "__main__":
    main()
