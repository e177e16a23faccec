"""FLOPs of one generated clip for each engine at its real size, and the H100 time they imply (docs/engines.md).

Counted, not estimated: each real model config is built on the meta device (no weights, no memory) and run once
under torch's `FlopCounterMode` at the clip's real shapes: the transformer (x 2 for classifier-free guidance, x 50
steps) and the VAE passes of one clip. Time on one H100 SXM = FLOPs / (989 TFLOP/s dense bf16 x UTILISATION); 40 %
is what large attention-heavy video DiTs typically sustain, so read the seconds as +-30 %, not as a measurement.
Clip 0 is MVideo's first clip / VACE's first (65-frame) clip; "continuation" is every later clip (4 s of video each).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import timing

timing.one_thread()

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

STEPS = 50
CFG = 2  # classifier-free guidance: two transformer passes a step
H100_TFLOPS = 989.0  # dense bf16, SXM
UTILISATION = 0.4


def tflops(fn: Callable[[], object]) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops() / 1e12


def meta(*shape: int) -> torch.Tensor:
    return torch.empty(*shape, device="meta")


# -- Wan2.1-VACE (configs of the diffusers checkpoints) -----------------------------------------------------------------

WAN_VACE = {
    "vace-1.3B": {"num_attention_heads": 12, "ffn_dim": 8960, "num_layers": 30, "vace_layers": list(range(0, 30, 2))},
    "vace-14B": {"num_attention_heads": 40, "ffn_dim": 13824, "num_layers": 40, "vace_layers": list(range(0, 40, 5))},
}


def vace_clip(name: str, height: int = 480, width: int = 832) -> dict[str, float]:
    """One 65-frame first clip and one 81-frame continuation clip, a reference image in both (one more latent frame)."""
    from diffusers import AutoencoderKLWan, WanVACETransformer3DModel

    with torch.device("meta"):
        model = WanVACETransformer3DModel(attention_head_dim=128, text_dim=4096, vace_in_channels=96, **WAN_VACE[name])
        vae = AutoencoderKLWan()
    h, w = height // 8, width // 8
    out = {"params_b": sum(p.numel() for p in model.parameters()) / 1e9}
    for part, frames in (("clip0", 65), ("continuation", 81)):
        latent_frames = (frames - 1) // 4 + 1 + 1  # + the reference image
        step = tflops(
            lambda f=latent_frames: model(
                hidden_states=meta(1, 16, f, h, w),
                timestep=torch.tensor([500], device="meta"),
                encoder_hidden_states=meta(1, 512, 4096),
                control_hidden_states=meta(1, 96, f, h, w),
                return_dict=False,
            )
        )
        encode = tflops(lambda f=frames: vae.encode(meta(1, 3, f, height, width)))
        decode = tflops(lambda f=frames: vae.decode(meta(1, 16, (f - 1) // 4 + 1, h, w)))
        reference = tflops(lambda: vae.encode(meta(1, 3, 1, height, width)))
        out[f"{part}_step"] = step * CFG
        out[f"{part}_vae"] = 2 * encode + reference + decode  # inactive + reactive control, reference, decode
    return out


# -- MVideo on CogVideoX ------------------------------------------------------------------------------------------------

COGVIDEOX = {
    "mvideo-2b": {"num_attention_heads": 30, "num_layers": 30, "use_rotary_positional_embeddings": False},
    "mvideo-5b": {
        "num_attention_heads": 48,
        "num_layers": 42,
        "use_rotary_positional_embeddings": True,
        "attention_bias": True,
    },
}


def mvideo_clip(name: str, height: int = 480, width: int = 720) -> dict[str, float]:
    """A 33-frame clip: clip 0 with the mask channels, a continuation with the appearance + motion conditions."""
    from diffusers import AutoencoderKLCogVideoX

    from mvideo_core.transformer import ConditionLatents, MVideoTransformer3DModel

    config = {
        "attention_head_dim": 64,
        "in_channels": 16,
        "out_channels": 16,
        "time_embed_dim": 512,
        "text_embed_dim": 4096,
        "sample_height": height // 8,
        "sample_width": width // 8,
        "sample_frames": 49,
        "max_text_seq_length": 226,
        **COGVIDEOX[name],
    }
    with torch.device("meta"):
        model = MVideoTransformer3DModel(**config)
        vae = AutoencoderKLCogVideoX()
    f, h, w = 9, height // 8, width // 8  # 33 frames -> 9 latent frames
    x, text, t = meta(1, f, 16, h, w), meta(1, 226, 4096), torch.tensor([500], device="meta")
    conditions = ConditionLatents(meta(1, 1, 16, h, w), meta(1, f, 16, 32, 48))  # motion at 256x384
    cache = model.condition_cache(conditions, h // 2, w // 2)
    encode = tflops(lambda: vae.encode(meta(1, 3, 33, height, width)))
    decode = tflops(lambda: vae.decode(meta(1, 16, f, h, w)))
    motion = tflops(lambda: vae.encode(meta(1, 3, 33, 256, 384)))
    appearance = tflops(lambda: vae.encode(meta(1, 3, 1, height, width)))
    return {
        "params_b": sum(p.numel() for p in model.parameters()) / 1e9,
        "clip0_step": CFG * tflops(lambda: model(x, text, t, mask_latents=meta(1, f, 16, h, w))),
        "clip0_vae": encode + decode,  # the mask video, the clip
        "continuation_step": CFG * tflops(lambda: model(x, text, t, mask_latents=x, condition_latents=cache))
        + tflops(lambda: model.condition_cache(conditions, h // 2, w // 2)) / STEPS,
        "continuation_vae": encode + decode + motion + appearance,
    }


def seconds_on_h100(tera: float) -> float:
    return tera / (H100_TFLOPS * UTILISATION)


def main() -> None:
    parser = timing.parser(__doc__)
    parser.parse_args()
    rows = {
        "mvideo-2b": mvideo_clip("mvideo-2b"),
        "mvideo-5b": mvideo_clip("mvideo-5b"),
        "vace-1.3B": vace_clip("vace-1.3B"),
        "vace-14B": vace_clip("vace-14B"),
    }
    figures: dict[str, float] = {}
    print(f"{'engine':<11}{'params':>8}{'TFLOP/step':>12}{'clip0 s':>9}{'cont. s':>9}  (H100 at {UTILISATION:.0%})")
    for name, r in rows.items():
        clip0 = STEPS * r["clip0_step"] + r["clip0_vae"]
        cont = STEPS * r["continuation_step"] + r["continuation_vae"]
        key = name.replace("-", "_").replace(".", "_").lower()
        figures.update(
            {
                f"{key}_params_b": round(r["params_b"], 3),
                f"{key}_continuation_step_tflop": round(r["continuation_step"], 1),
                f"{key}_clip0_tflop": round(clip0, 0),
                f"{key}_continuation_tflop": round(cont, 0),
                f"{key}_clip0_h100_s": round(seconds_on_h100(clip0), 1),
                f"{key}_continuation_h100_s": round(seconds_on_h100(cont), 1),
            }
        )
        print(
            f"{name:<11}{r['params_b']:>7.2f}B{r['continuation_step']:>12.0f}"
            f"{seconds_on_h100(clip0):>9.0f}{seconds_on_h100(cont):>9.0f}"
        )
    timing.finish("clip_flops", figures, {})


if __name__ == "__main__":
    main()
