"""Loss of paper eq. 2: L_d as CogVideoX trains it (v-prediction, SNR weights), L_c, and their sum."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mvideo_core.training.losses import consistency_loss, diffusion_loss, mvideo_loss, snr_weights


@pytest.fixture(scope="module")
def scheduler():
    from mvideo_core.tiny import tiny_scheduler

    return tiny_scheduler("5b")  # CogVideoX's: v-prediction, zero terminal SNR


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), t=st.lists(st.integers(0, 999), min_size=2, max_size=2))
def test_weighted_x0_loss_equals_the_v_prediction_mse(scheduler, seed, t):
    """With weights 1 / (1 - alphas_cumprod), the x0 loss of the diffusers example is exactly the MSE on v."""
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(2, 3, 4, 4, 6, generator=g, dtype=torch.float64)
    noise = torch.randn(latents.shape, generator=g, dtype=torch.float64)
    pred_v = torch.randn(latents.shape, generator=g, dtype=torch.float64)
    timesteps = torch.tensor(t)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    true_v = scheduler.get_velocity(latents, noise, timesteps)
    expected = ((pred_v - true_v) ** 2).mean()
    assert diffusion_loss(pred_v, noisy, latents, timesteps, scheduler).item() == pytest.approx(
        expected.item(), rel=1e-4
    )


def test_perfect_v_prediction_has_zero_loss(scheduler):
    latents = torch.randn(2, 3, 4, 4, 6)
    noise = torch.randn_like(latents)
    t = torch.tensor([10, 700])
    noisy = scheduler.add_noise(latents, noise, t)
    v = scheduler.get_velocity(latents, noise, t)
    assert diffusion_loss(v, noisy, latents, t, scheduler).item() == pytest.approx(0.0, abs=1e-8)


def test_snr_weights_grow_at_low_noise(scheduler):
    w = snr_weights(scheduler.alphas_cumprod, torch.tensor([999, 500, 1]), 5)
    assert w.shape == (3, 1, 1, 1, 1)
    assert w[0].item() == pytest.approx(1.0)  # zero terminal SNR: alphas_cumprod[999] == 0
    assert w[0] < w[1] < w[2]


def test_mvideo_loss_is_diffusion_plus_alpha_consistency(scheduler):
    latents = torch.randn(2, 3, 4, 4, 6)
    t = torch.tensor([100, 800])
    noisy = scheduler.add_noise(latents, torch.randn_like(latents), t)
    student = torch.randn_like(latents, requires_grad=True)
    teacher = torch.randn_like(latents)
    terms = mvideo_loss(student, noisy, latents, t, scheduler, teacher, alpha=0.5)
    l_d = diffusion_loss(student, noisy, latents, t, scheduler)
    l_c = ((student - teacher) ** 2).mean()
    assert terms.total.item() == pytest.approx((l_d + 0.5 * l_c).item(), rel=1e-5)
    assert terms.consistency.item() == pytest.approx(l_c.item(), rel=1e-5)
    terms.total.backward()
    assert student.grad is not None
    assert not terms.diffusion.requires_grad and not terms.consistency.requires_grad


def test_without_teacher_or_alpha_zero_there_is_no_consistency_term(scheduler):
    latents = torch.randn(1, 3, 4, 4, 6)
    t = torch.tensor([300])
    student = torch.randn_like(latents)
    a = mvideo_loss(student, latents, latents, t, scheduler, None, alpha=1.0)
    b = mvideo_loss(student, latents, latents, t, scheduler, torch.zeros_like(latents), alpha=0.0)
    assert a.consistency.item() == b.consistency.item() == 0.0
    assert a.total.item() == b.total.item() == a.diffusion.item()


def test_consistency_loss_gives_no_gradient_to_the_teacher():
    student = torch.randn(2, 3, requires_grad=True)
    teacher = torch.randn(2, 3, requires_grad=True)
    consistency_loss(student, teacher).backward()
    assert teacher.grad is None and student.grad is not None


def test_mismatched_shapes_are_named(scheduler):
    with pytest.raises(ValueError, match="matching shapes"):
        diffusion_loss(
            torch.zeros(1, 2, 4, 4, 4),
            torch.zeros(1, 3, 4, 4, 4),
            torch.zeros(1, 3, 4, 4, 4),
            torch.tensor([1]),
            scheduler,
        )
    with pytest.raises(ValueError, match="student .* and teacher"):
        consistency_loss(torch.zeros(2, 3), torch.zeros(3, 2))
