"""MVideo's training loss, paper eq. 2: L = L_d + alpha * L_c.

L_d is the diffusion loss exactly as CogVideoX is fine-tuned in diffusers' examples: the transformer predicts v,
the scheduler turns it into an x0 estimate, and the squared error to the clean latents is weighted by
1 / (1 - alphas_cumprod[t]). (That weighting makes L_d equal to the plain MSE on v: both losses below live on
the same scale.) L_c is the L2 distance between the student's prediction and the frozen base model's prediction
on the same noisy latents and text; it keeps the text alignment the base model learned (paper 3.4, table 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LossTerms:
    """The terms of eq. 2 for one batch; `total` carries the graph, the others are detached for logging."""

    total: torch.Tensor
    diffusion: torch.Tensor
    consistency: torch.Tensor

    def as_log(self) -> dict[str, float]:
        return {
            "loss": float(self.total.detach()),
            "loss_diffusion": float(self.diffusion),
            "loss_consistency": float(self.consistency),
        }


def _per_sample_mean(values: torch.Tensor) -> torch.Tensor:
    """[B, ...] -> [B]."""
    return values.reshape(values.shape[0], -1).mean(dim=1)


def snr_weights(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, ndim: int) -> torch.Tensor:
    """CogVideoX's loss weights 1 / (1 - alphas_cumprod[t]), shaped [B, 1, ...] to broadcast over `ndim` dims."""
    weights = 1.0 / (1.0 - alphas_cumprod.to(timesteps.device)[timesteps].float())
    return weights.reshape(-1, *([1] * (ndim - 1)))


def diffusion_loss(
    model_output: torch.Tensor,
    noisy_latents: torch.Tensor,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    scheduler,
) -> torch.Tensor:
    """L_d. model_output, noisy_latents, latents: [B, F, C, H, W]; timesteps: [B] long.

    The v-prediction is turned into an x0 estimate by `scheduler.get_velocity(model_output, noisy_latents, t)`
    (sqrt(a) x_t - sqrt(1 - a) v), as diffusers' CogVideoX LoRA examples do.
    """
    if model_output.shape != latents.shape or noisy_latents.shape != latents.shape:
        raise ValueError(
            f"diffusion loss needs matching shapes, got model_output {tuple(model_output.shape)}, "
            f"noisy_latents {tuple(noisy_latents.shape)}, latents {tuple(latents.shape)}"
        )
    pred_x0 = scheduler.get_velocity(model_output.float(), noisy_latents.float(), timesteps)
    weights = snr_weights(scheduler.alphas_cumprod, timesteps, pred_x0.ndim)
    return _per_sample_mean(weights * (pred_x0 - latents.float()) ** 2).mean()


def consistency_loss(student_output: torch.Tensor, teacher_output: torch.Tensor) -> torch.Tensor:
    """L_c: mean squared distance to the frozen base model's prediction (no gradient flows into the teacher)."""
    if student_output.shape != teacher_output.shape:
        raise ValueError(
            f"consistency loss needs matching shapes, got student {tuple(student_output.shape)} and teacher "
            f"{tuple(teacher_output.shape)}"
        )
    return _per_sample_mean((student_output.float() - teacher_output.detach().float()) ** 2).mean()


def mvideo_loss(
    model_output: torch.Tensor,
    noisy_latents: torch.Tensor,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    scheduler,
    teacher_output: torch.Tensor | None = None,
    alpha: float = 1.0,
    consistency_output: torch.Tensor | None = None,
) -> LossTerms:
    """Eq. 2. Without a teacher output (alpha = 0, or the teacher is switched off) L_c is reported as 0.

    `consistency_output`: the student prediction that L_c compares with the teacher, when it is not `model_output`
    (the trainer's `consistency_inputs="unmasked"`: a second student pass without mask and conditions).
    """
    l_d = diffusion_loss(model_output, noisy_latents, latents, timesteps, scheduler)
    if teacher_output is None or alpha == 0:
        l_c = torch.zeros((), device=l_d.device)
        total = l_d
    else:
        student = model_output if consistency_output is None else consistency_output
        l_c = consistency_loss(student, teacher_output)
        total = l_d + alpha * l_c
    return LossTerms(total=total, diffusion=l_d.detach(), consistency=l_c.detach())
