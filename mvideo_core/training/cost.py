"""What training MVideo at the paper's scale costs: FLOPs per step from the model's own shapes, GPU-hours, memory.

The FLOPs are counted, not estimated: the trainer's step for one sample (student forward with mask and both long-
video conditions, gradient-checkpointing recompute, teacher forward with adapters off, backward) runs on the real-
size MVideo transformer built on the meta device under torch's `FlopCounterMode` (matmuls, convolutions, attention;
element-wise work is left out). Meta tensors have shapes but no data: nothing is computed or allocated, the count
takes seconds on a CPU. The bytes autograd saves for backward are counted in the same pass, which gives activation
memory; the attention matrices [B, heads, Sq, Sk] that the math kernel keeps on the meta device are left out, as the
fused kernels GPUs run (flash, memory-efficient) keep only the output and a log-sum-exp per query. `python -m mvideo_core.training.cost` prints the tables docs/training.md quotes.
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from mvideo_core.clip_spec import COGVIDEOX_CLIP as CLIP

# diffusers' transformer/config.json of THUDM/CogVideoX-2b and -5b (the fields that set the cost)
BASE_CONFIGS: dict[str, dict[str, Any]] = {
    "2b": {"num_attention_heads": 30, "num_layers": 30, "use_rotary_positional_embeddings": False},
    "5b": {"num_attention_heads": 48, "num_layers": 42, "use_rotary_positional_embeddings": True},
}
_COMMON = {
    "attention_head_dim": 64,
    "in_channels": 16,
    "out_channels": 16,
    "text_embed_dim": 4096,
    "time_embed_dim": 512,
}
_COMMON |= {"sample_height": 60, "sample_width": 90, "sample_frames": 49, "max_text_seq_length": 226}
# dense bf16 peak FLOP/s (SXM parts) and the model FLOPs utilisation the GPU-hours assume
GPU_PEAK = {"A100": 312e12, "H100": 989e12}
UTILISATION = 0.40
# the paper (4.1): 10k steps, global batch 64 on 32 GPUs = 2 a GPU; 480x720, 33-frame clips, conditions at 256x384
PAPER = {"steps": 10_000, "global_batch": 64, "gpus": 32, "frames": CLIP.clip_frames, "lora_rank": 128}
PAPER |= {"height": CLIP.default_size[0], "width": CLIP.default_size[1]}
PAPER |= {"condition_height": 256, "condition_width": 384, "condition_frames": CLIP.clip_frames}


@dataclass
class StepCost:
    """One training sample's step on one base model, counted on the meta device."""

    model: str
    params: int  # all transformer weights (frozen base + LoRA + MVideo modules)
    trainable: int  # LoRA + MVideo modules
    flops: float  # per sample: forward, recompute, teacher, backward
    forward_flops: float  # the student's forward alone (what inference pays per step and sample, without CFG)
    saved_bytes: int  # what autograd keeps for backward per sample (with gradient checkpointing)
    recompute_bytes: int  # the largest block's activations, alive while it is recomputed in backward

    def gpu_hours(self, gpu: str, steps: int = PAPER["steps"], batch: int = PAPER["global_batch"]) -> float:
        return self.flops * batch * steps / (GPU_PEAK[gpu] * UTILISATION) / 3600


def meta_model(name: str, lora_rank: int = PAPER["lora_rank"]):
    """The real-size MVideo transformer of CogVideoX-`name` on the meta device, frozen, with the trainer's LoRA."""
    from peft import LoraConfig

    from mvideo_core.transformer import MVideoTransformer3DModel

    with torch.device("meta"):
        model = MVideoTransformer3DModel(**_COMMON, **BASE_CONFIGS[name])
    model.to(torch.bfloat16).requires_grad_(False)
    target = ["to_q", "to_k", "to_v", "to_out.0"]
    model.add_adapter(LoraConfig(r=lora_rank, lora_alpha=lora_rank, init_lora_weights=True, target_modules=target))
    for param in model.mvideo_parameters():
        param.requires_grad_(True)
    return model


def paper_inputs(model, batch: int = 1, device: str = "meta", dtype: torch.dtype = torch.bfloat16) -> dict[str, Any]:
    """Inputs of one step at the paper's sizes: latents [B, 9, 16, 60, 90], mask the same, conditions, text."""
    from mvideo_core.transformer import ConditionLatents

    c = model.config.in_channels
    s, t = CLIP.vae_scale_spatial, CLIP.vae_scale_temporal
    f, fc = (PAPER["frames"] - 1) // t + 1, (PAPER["condition_frames"] - 1) // t + 1  # causal VAE: 1 + 4k frames
    h, w = PAPER["height"] // s, PAPER["width"] // s
    hc, wc = PAPER["condition_height"] // s, PAPER["condition_width"] // s

    def empty(*shape):
        return torch.empty(*shape, device=device, dtype=dtype)

    return {
        "hidden_states": empty(batch, f, c, h, w),
        "mask_latents": empty(batch, f, c, h, w),
        "encoder_hidden_states": empty(batch, model.config.max_text_seq_length, model.config.text_embed_dim),
        "timestep": torch.zeros(batch, dtype=torch.long, device=device),
        "condition_latents": ConditionLatents(appearance=empty(batch, 1, c, h, w), motion=empty(batch, fc, c, hc, wc)),
    }


def count_step(model, inputs: dict[str, Any], consistency: bool = True, unmasked: bool = False) -> dict[str, float]:
    """FLOPs and saved bytes of the trainer's step (`MVideoTrainer.compute_loss` + backward) for `inputs`."""
    from torch.utils.flop_counter import FlopCounterMode

    params = {id(p) for p in model.parameters()}
    width = model.config.num_attention_heads * model.config.attention_head_dim
    widths = {width, 3 * width, 4 * width, model.config.text_embed_dim}
    saved: dict[int, int] = {}

    def pack(t):  # weights saved for the input gradient are not activations (meta storages share no address)
        # [..., Sq, Sk] attention matrices of the math kernel: see the module docstring
        attention_matrix = t.dim() >= 3 and min(t.shape[-2:]) > 256 and not widths & set(t.shape[-2:])
        if id(t) not in params and id(t._base) not in params and not attention_matrix:
            saved[id(t)] = t.untyped_storage().nbytes()
        return t

    plain = {k: v for k, v in inputs.items() if k not in ("mask_latents", "condition_latents")}
    with FlopCounterMode(display=False) as counter:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            pred = model(**inputs, return_dict=False)[0]
        forward = counter.get_total_flops()
        loss = pred.float().square().mean()
        if consistency:
            with torch.no_grad(), model.teacher_mode():
                teacher = model(**plain, return_dict=False)[0]
            student = model(**plain, return_dict=False)[0] if unmasked else pred
            loss = loss + (student.float() - teacher.float()).square().mean()
        loss.backward()
    return {"flops": float(counter.get_total_flops()), "forward": float(forward), "saved": float(sum(saved.values()))}


def step_cost(name: str, lora_rank: int = PAPER["lora_rank"]) -> StepCost:
    """Count one sample's training step of MVideo on CogVideoX-`name` at the paper's settings."""
    model = meta_model(name, lora_rank)
    inputs = paper_inputs(model)
    model.enable_gradient_checkpointing()
    with_ckpt = count_step(model, inputs)
    model.disable_gradient_checkpointing()
    without = count_step(model, inputs)
    return StepCost(
        model=name,
        params=sum(p.numel() for p in model.parameters()),
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        flops=with_ckpt["flops"],
        forward_flops=with_ckpt["forward"],
        saved_bytes=int(with_ckpt["saved"]),
        recompute_bytes=int((without["saved"] - with_ckpt["saved"]) / model.config.num_layers),
    )


def memory_per_gpu(cost: StepCost, engine: str, gpus: int, batch_per_gpu: int = 2) -> dict[str, float]:
    """GiB per GPU by kind of state, bf16 compute (the trainer's defaults), for `engine` in ddp | zero2 | fsdp."""
    frozen, trained = cost.params - cost.trainable, cost.trainable
    gib = 1024**3
    if engine == "fsdp":  # all weights fp32 and sharded; with conditions the backward gathers every block (bf16)
        weights = frozen * 4 / gpus + frozen * 2
        trained_state = trained * (4 + 4 + 8) / gpus + trained * 2
    elif engine == "zero2":  # bf16 weights everywhere; fp32 master, Adam moments and gradients sharded
        weights = frozen * 2
        trained_state = trained * 2 + trained * (4 + 8 + 2) / gpus
    elif engine == "ddp":  # frozen base bf16, trained weights fp32 with full gradients and Adam moments
        weights = frozen * 2
        trained_state = trained * (4 + 4 + 8)
    else:
        raise ValueError(f"engine must be ddp, zero2 or fsdp, got {engine!r}")
    activations = (cost.saved_bytes + cost.recompute_bytes) * batch_per_gpu
    out = {"weights": weights / gib, "trained state": trained_state / gib, "activations": activations / gib}
    out["total"] = sum(out.values())
    return out


def report(names: tuple[str, ...] = ("2b", "5b")) -> str:
    """The cost tables in Markdown."""
    costs = [step_cost(n) for n in names]
    lines = [
        f"| model | weights | trained | TFLOP / sample step | TFLOP / step (batch {PAPER['global_batch']}) | "
        f"A100 GPU-h, {PAPER['steps']} steps | H100 GPU-h | days on {PAPER['gpus']} H100 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in costs:
        h100 = c.gpu_hours("H100")
        lines.append(
            f"| {c.model} | {c.params / 1e9:.2f} B | {c.trainable / 1e6:.0f} M | {c.flops / 1e12:.0f} "
            f"(forward {c.forward_flops / 1e12:.0f}) | {c.flops * PAPER['global_batch'] / 1e15:.1f} P | "
            f"{c.gpu_hours('A100'):,.0f} | {h100:,.0f} | {h100 / PAPER['gpus'] / 24:.1f} |"
        )
    lines += ["", "| model | engine | GPUs | weights GiB | trained state GiB | activations GiB | total GiB |"]
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    for c in costs:
        for engine in ("ddp", "zero2", "fsdp"):
            for gpus in (8, PAPER["gpus"]):
                m = memory_per_gpu(c, engine, gpus)
                lines.append(
                    f"| {c.model} | {engine} | {gpus} | {m['weights']:.1f} | {m['trained state']:.2f} | "
                    f"{m['activations']:.1f} | {m['total']:.1f} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mvideo_core.training.cost", description=__doc__.split("\n")[0])
    parser.add_argument("--model", nargs="*", default=["2b", "5b"], choices=sorted(BASE_CONFIGS))
    args = parser.parse_args(argv)
    with contextlib.suppress(Exception):
        torch.set_num_threads(1)
    print(
        f"assumed utilisation: {UTILISATION:.0%} of dense bf16 peak ({', '.join(f'{k} {v / 1e12:.0f} TFLOP/s' for k, v in GPU_PEAK.items())})"
    )
    print(report(tuple(args.model)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
