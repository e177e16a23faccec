"""Training step cost of the consistency loss (paper eq. 2): optimizer steps with L_d + L_c against L_d alone.

The teacher is the same module in `teacher_mode()`, one extra forward without grad, so a step with L_c should cost
at most 1.5x a step without it. Measured on a small random CogVideoX (4 layers, 4 heads x 32, batch 4 on 9x8x12
latents, with mask and both long-video conditions) through the real trainer, with and without gradient
checkpointing; the two variants run interleaved in blocks so machine load hits both alike. Peak memory of one step is
measured per variant in a fresh subprocess (CUDA: max allocated; CPU: peak RSS growth over the loaded model, with
glibc returning every tensor buffer on free), and the activations autograd saves for backward are counted exactly.
Ends with one JSON line; `--quick` runs fewer steps.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

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


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


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
        before = _rss_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
        for k in range(1, 3):
            one_step(trainer, batch, k)
        peak = (_rss_kib("VmHWM") - before) / 1024
    print(json.dumps({"peak_mib": peak}))


def measure_memory(base: str, workdir: Path, alpha: float, checkpointing: bool) -> float:
    cmd = [sys.executable, __file__, "--child", base, str(workdir), str(alpha), str(int(checkpointing))]
    # glibc: every tensor buffer from its own mmap, returned on free, so the peak RSS follows the live tensors
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "16384", "MALLOC_TRIM_THRESHOLD_": "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout.strip().splitlines()[-1]
    return float(json.loads(out)["peak_mib"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (finishes < 1 min)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.child:
        base, workdir, alpha, ckpt = args.child
        memory_child(base, workdir, float(alpha), bool(int(ckpt)))
        return
    blocks, steps = (3, 3) if args.quick else (6, 5)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        base = make_base(workdir / "base")
        print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, torch threads: {torch.get_num_threads()}")
        print(f"model: CogVideoX {BENCH_TRANSFORMER}, batch 4, latents 9x8x12 (+ mask, appearance, motion)")
        print(
            f"{'checkpointing':>13s} {'L_d ms':>8s} {'L_d+L_c ms':>11s} {'ratio':>6s} {'peak L_d MiB':>13s} "
            f"{'peak +L_c MiB':>14s} {'saved L_d MiB':>14s} {'saved +L_c MiB':>15s}"
        )
        for ckpt in (True, False):
            runs = {a: make_trainer(workdir, base, a, ckpt) for a in (0.0, 1.0)}
            for trainer, batch in runs.values():
                one_step(trainer, batch, 0)  # warm-up
            times: dict[float, list[float]] = {0.0: [], 1.0: []}
            for block in range(blocks):
                for a in (0.0, 1.0) if block % 2 == 0 else (1.0, 0.0):
                    trainer, batch = runs[a]
                    start = time.perf_counter()
                    for k in range(steps):
                        one_step(trainer, batch, 1 + block * steps + k)
                    times[a].append((time.perf_counter() - start) / steps * 1000)
            t0, t1 = statistics.median(times[0.0]), statistics.median(times[1.0])
            m0 = measure_memory(base, workdir, 0.0, ckpt)
            m1 = measure_memory(base, workdir, 1.0, ckpt)
            s0, s1 = (saved_activation_mib(*runs[a]) for a in (0.0, 1.0))
            tag = "ckpt" if ckpt else "no_ckpt"
            figures.update(
                {
                    f"step_ms_without_lc_{tag}": round(t0, 2),
                    f"step_ms_with_lc_{tag}": round(t1, 2),
                    f"ratio_{tag}": round(t1 / t0, 3),
                    f"peak_mib_without_lc_{tag}": round(m0, 1),
                    f"peak_mib_with_lc_{tag}": round(m1, 1),
                    f"saved_activations_mib_without_lc_{tag}": round(s0, 2),
                    f"saved_activations_mib_with_lc_{tag}": round(s1, 2),
                }
            )
            print(f"{str(ckpt):>13s} {t0:8.1f} {t1:11.1f} {t1 / t0:6.2f} {m0:13.1f} {m1:14.1f} {s0:14.2f} {s1:15.2f}")
    ok = figures["ratio_ckpt"] <= TARGET_RATIO and figures["ratio_no_ckpt"] <= TARGET_RATIO
    targets = {"ratio_ckpt": f"<= {TARGET_RATIO}", "ratio_no_ckpt": f"<= {TARGET_RATIO}"}
    print(json.dumps({"bench": "training", "figures": figures, "targets": targets, "ok": bool(ok)}))


if __name__ == "__main__":
    main()
