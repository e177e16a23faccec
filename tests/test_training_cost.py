"""The cost model counts what the trainer runs: its meta-device FLOP count of a step equals torch's count of a real
MVideoTrainer step on the tiny model, and the paper-scale figures follow from it."""

from __future__ import annotations

import pytest
import torch
from test_training_trainer import _batch, make_config, write_tiny_cache

from mvideo_core.training import cost
from mvideo_core.training.trainer import MVideoTrainer
from mvideo_core.transformer import ConditionLatents

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> str:
    from mvideo_core.tiny import save_tiny_base_model

    return str(save_tiny_base_model(tmp_path_factory.mktemp("base"), "2b"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory, base_model) -> str:
    return str(write_tiny_cache(tmp_path_factory.mktemp("cache"), base_model))


@pytest.mark.parametrize("checkpointing", [True, False])
def test_cost_model_counts_a_real_trainer_step(tmp_path, base_model, cache, checkpointing):
    from torch.utils.flop_counter import FlopCounterMode

    trainer = MVideoTrainer(make_config(tmp_path, base_model, cache, gradient_checkpointing=checkpointing)).setup()
    batch = _batch(trainer)
    with FlopCounterMode(display=False) as counter:
        trainer.accelerator.backward(trainer.compute_loss(batch).total)
    inputs = {
        "hidden_states": batch["latents"],
        "mask_latents": batch["mask_latents"],
        "encoder_hidden_states": batch["prompt_embeds"],
        "timestep": torch.tensor([10, 900]),
        "condition_latents": ConditionLatents(appearance=batch["appearance"], motion=batch["motion"]),
    }
    counted = cost.count_step(trainer.unwrapped, inputs)
    assert counted["flops"] == counter.get_total_flops() > 0
    assert 0 < counted["forward"] < counted["flops"]


def test_gpu_hours_and_memory_follow_from_the_count():
    step = cost.StepCost(
        "x",
        params=5_000_000_000,
        trainable=100_000_000,
        flops=1e15,
        forward_flops=2.5e14,
        saved_bytes=2**30,
        recompute_bytes=0,
    )
    # 1 PFLOP x 64 x 10k steps at 40 % of 989 TFLOP/s
    assert step.gpu_hours("H100") == pytest.approx(1e15 * 64 * 10_000 / (989e12 * 0.4) / 3600)
    ddp, zero2 = cost.memory_per_gpu(step, "ddp", 32), cost.memory_per_gpu(step, "zero2", 32)
    assert ddp["weights"] == zero2["weights"] == pytest.approx(4.9e9 * 2 / 2**30)
    assert zero2["trained state"] < ddp["trained state"] and ddp["activations"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="ddp, zero2 or fsdp"):
        cost.memory_per_gpu(step, "zero3", 8)
