"""LoRA trainer on a tiny random CogVideoX: loss goes down, only LoRA + MVideo weights learn, teacher == base,
resume replays the same losses, the exported file loads in MVideoPipeline, loss terms reach TensorBoard; the cost
model counts exactly the FLOPs of a real trainer step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mvideo_core.training import cost
from mvideo_core.training.config import ConfigError, TrainConfig
from mvideo_core.training.precompute import CacheError, CacheGeometry, CacheWriter, model_identity
from mvideo_core.training.trainer import MVideoTrainer
from mvideo_core.transformer import ConditionLatents

GEOMETRY = dict(height=64, width=96, num_frames=9, condition_height=32, condition_width=48, condition_frames=9)


def _latents(generator, frames: int, h: int, w: int) -> torch.Tensor:
    """Smooth structured latents [F, 4, h, w] (what a VAE gives is smooth too), not white noise."""
    y = torch.linspace(0, 3.14, h)[:, None]
    x = torch.linspace(0, 3.14, w)[None, :]
    phase = torch.rand(4, generator=generator) * 6.28
    base = torch.stack([torch.sin(y * (c + 1) + x + phase[c]) for c in range(4)])  # [4, h, w]
    return torch.stack([base * (1 - 0.1 * f) for f in range(frames)])  # [F, 4, h, w]


def write_tiny_cache(cache_dir: Path, base_model: str, num_samples: int = 8, conditions: bool = True) -> Path:
    """A latent cache of structured latents with the tiny model's shapes (what precompute writes, without a VAE)."""
    from mvideo_core.training.manifest import ClipRecord

    geometry = CacheGeometry(fps=8.0, **GEOMETRY)
    header = {
        "geometry": geometry.__dict__,
        "base_model": model_identity(base_model),
        "latent_channels": 4,
        "text_shape": [16, 16],
    }
    writer = CacheWriter(cache_dir, 0, header, shard_size=5)
    g = torch.Generator().manual_seed(0)
    for i in range(num_samples):
        record = ClipRecord(f"clip{i:03d}", "x.mp4", 0, 4, 8.0, 72, 64, 96, "crop", "a person running", "m.json")
        tensors = {
            "latents": _latents(g, 3, 8, 12),
            "mask_latents": (_latents(g, 3, 8, 12) > 0).float(),
            "prompt_embeds": torch.randn(16, 16, generator=g),
        }
        if conditions:
            tensors["appearance"] = _latents(g, 1, 8, 12)
            tensors["motion"] = _latents(g, 3, 4, 6)
        writer.add(record, tensors)
    writer.flush()
    return cache_dir


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> str:
    from mvideo_core.tiny import save_tiny_base_model

    return str(save_tiny_base_model(tmp_path_factory.mktemp("base"), "2b"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory, base_model) -> str:
    return str(write_tiny_cache(tmp_path_factory.mktemp("cache"), base_model))


def make_config(tmp_path, base_model, cache, **overrides) -> TrainConfig:
    values = dict(
        base_model=base_model,
        cache_dir=cache,
        output_dir=str(tmp_path / "run"),
        **GEOMETRY,
        lora_rank=4,
        lora_alpha=4,
        train_batch_size=2,
        max_train_steps=4,
        lr_warmup_steps=0,
        mixed_precision="no",
        gradient_checkpointing=True,
        report_to="none",
        checkpointing_steps=1000,
        condition_dropout=0.0,
        dataloader_num_workers=0,
    )
    values.update(overrides)
    return TrainConfig(**values)


def _batch(trainer, size=2):
    from mvideo_core.training.dataset import collate_samples

    return collate_samples([trainer.dataset[i] for i in range(size)])


# -- config ------------------------------------------------------------------------------------------------------


def test_config_defaults_are_the_papers():
    cfg = TrainConfig()
    assert (cfg.learning_rate, cfg.optimizer, cfg.max_train_steps) == (2e-4, "adam", 10_000)
    assert (cfg.height, cfg.width, cfg.fps, cfg.num_frames) == (480, 720, 8.0, 33)
    assert (cfg.condition_height, cfg.condition_width, cfg.consistency_weight) == (256, 384, 1.0)
    assert cfg.lora_target_modules == ["to_q", "to_k", "to_v", "to_out.0"]


def test_config_file_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-4\nmax_train_steps: 50\nlora_target_modules: [to_q, to_v]\n")
    cfg = TrainConfig.from_file(path, ["max_train_steps=7", "mixed_precision=no"])
    assert (cfg.learning_rate, cfg.max_train_steps, cfg.mixed_precision) == (1e-4, 7, "no")
    assert cfg.lora_target_modules == ["to_q", "to_v"]


def test_example_config_parses():
    cfg = TrainConfig.from_file(Path(__file__).parents[1] / "configs" / "train_example.yaml")
    assert (cfg.consistency_weight, cfg.consistency_inputs) == (1.0, "masked")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("learnig_rate: 0.1\n", "did you mean learning_rate"),
        ("max_train_steps: many\n", "`max_train_steps` must be an integer"),
        ("num_frames: 32\n", "4k \\+ 1"),
        ("height: 481\n", r"divisible by 16 \(VAE x8, patch x2\) but is 481"),
        ("mixed_precision: fp8\n", "'no', 'fp16' or 'bf16'"),
        ("- a\n- b\n", "mapping"),
        ("gradient_checkpointing: 1\n", "true or false"),
        ("consistency_inputs: both\n", "'masked' or 'unmasked', got 'both'"),
    ],
)
def test_bad_config_values_are_named(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_file(path)


def test_missing_config_file_and_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        TrainConfig.from_file(tmp_path / "nope.yaml")
    (tmp_path / "c.yaml").write_text("{}")
    with pytest.raises(ConfigError, match="key=value"):
        TrainConfig.from_file(tmp_path / "c.yaml", ["max_train_steps"])


# -- the trainer -------------------------------------------------------------------------------------------------


def test_grads_reach_only_lora_and_mvideo_weights(tmp_path, base_model, cache):
    trainer = MVideoTrainer(make_config(tmp_path, base_model, cache)).setup()
    terms = trainer.compute_loss(_batch(trainer))
    trainer.accelerator.backward(terms.total)
    with_grad = {n for n, p in trainer.unwrapped.named_parameters() if p.grad is not None}
    assert with_grad == set(trainer.trainable_names)
    assert all("lora_" in n or n.startswith(("mask_proj", "condition_embed")) for n in with_grad)
    assert any(n.startswith("mask_proj") for n in with_grad) and any("lora_B" in n for n in with_grad)
    # the frozen base has no gradient at all, and the mask projection did get a signal
    assert trainer.unwrapped.mask_proj.weight.grad.abs().sum() > 0
    frozen = [p for n, p in trainer.unwrapped.named_parameters() if n not in set(trainer.trainable_names)]
    assert frozen and all(not p.requires_grad and p.grad is None for p in frozen)


def _base_prediction(base_model, batch, generator):
    """The frozen base CogVideoX, loaded on its own, on the same noisy latents and text."""
    from diffusers import CogVideoXDPMScheduler, CogVideoXTransformer3DModel

    base = CogVideoXTransformer3DModel.from_pretrained(base_model, subfolder="transformer").eval()
    scheduler = CogVideoXDPMScheduler.from_pretrained(base_model, subfolder="scheduler")
    latents = batch["latents"]
    t = torch.randint(0, 1000, (latents.shape[0],), generator=generator)
    noisy = scheduler.add_noise(latents, torch.randn(latents.shape, generator=generator), t)
    with torch.no_grad():
        out = base(hidden_states=noisy, encoder_hidden_states=batch["prompt_embeds"], timestep=t, return_dict=False)
    return noisy, t, out[0]


def _teacher_prediction(trainer, batch, noisy, t):
    with torch.no_grad(), trainer.unwrapped.teacher_mode():
        return trainer._forward(noisy, batch["prompt_embeds"], t, batch["mask_latents"], None)


def test_teacher_is_the_base_model_and_consistency_loss_is_zero_at_step_zero(tmp_path, base_model, cache):
    trainer = MVideoTrainer(make_config(tmp_path, base_model, cache)).setup()
    trainer.model.eval()
    batch = _batch(trainer)
    noisy, t, base_out = _base_prediction(base_model, batch, torch.Generator().manual_seed(3))
    assert torch.equal(_teacher_prediction(trainer, batch, noisy, t), base_out)
    terms = trainer.compute_loss(batch)  # with mask and both conditions
    assert terms.consistency.item() == 0.0
    assert terms.diffusion.item() > 0


def _perturbed_trainer(tmp_path, base_model, cache, **overrides):
    """A trainer whose LoRA and mask weights are random (not their zero init), so student != teacher."""
    trainer = MVideoTrainer(make_config(tmp_path, base_model, cache, **overrides)).setup()
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, p in trainer.unwrapped.named_parameters():
            if name in set(trainer.trainable_names):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    trainer.model.eval()
    return trainer


@pytest.mark.parametrize("inputs", ["masked", "unmasked"])
def test_consistency_loss_compares_the_chosen_student_pass_with_the_teacher(tmp_path, base_model, cache, inputs):
    trainer = _perturbed_trainer(tmp_path, base_model, cache, consistency_inputs=inputs)
    batch = _batch(trainer)
    terms = trainer.compute_loss(batch)
    # replay the step's randomness (timesteps, noise) to rebuild both passes by hand
    t, noise, _ = trainer.step_draws(2, batch["latents"].shape[1:], 0)
    noisy = trainer.scheduler.add_noise(batch["latents"], noise, t)
    from mvideo_core.transformer import ConditionLatents

    conditions = ConditionLatents(appearance=batch["appearance"], motion=batch["motion"])
    with torch.no_grad():
        masked = trainer._forward(noisy, batch["prompt_embeds"], t, batch["mask_latents"], conditions)
        text_only = trainer._forward(noisy, batch["prompt_embeds"], t, None, None)
        teacher = _teacher_prediction(trainer, batch, noisy, t)
    want = {"masked": masked, "unmasked": text_only}[inputs]
    other = {"masked": text_only, "unmasked": masked}[inputs]
    assert terms.consistency.item() == pytest.approx(((want - teacher) ** 2).mean().item(), rel=1e-4)
    assert terms.consistency.item() != pytest.approx(((other - teacher) ** 2).mean().item(), rel=1e-2)
    # L_d always trains the masked prediction
    assert terms.diffusion.item() > 0 and terms.total.item() == pytest.approx(
        terms.diffusion.item() + terms.consistency.item(), rel=1e-5
    )


def _mask_proj_grad(trainer, batch):
    trainer.model.zero_grad()
    trainer.accelerator.backward(trainer.compute_loss(batch).total)
    return trainer.unwrapped.mask_proj.weight.grad.clone()


def test_unmasked_consistency_leaves_the_mask_input_to_the_diffusion_loss(tmp_path, base_model, cache):
    """With consistency_inputs=unmasked the mask projection gets exactly L_d's gradient (L_c never sees the mask);
    with the paper's literal masked L_c the teacher pulls on it too."""
    grads = {}
    for name, overrides in {
        "d_only": dict(consistency_weight=0.0),
        "unmasked": dict(consistency_inputs="unmasked"),
        "masked": dict(consistency_inputs="masked"),
    }.items():
        trainer = _perturbed_trainer(tmp_path / name, base_model, cache, **overrides)
        grads[name] = _mask_proj_grad(trainer, _batch(trainer))
    torch.testing.assert_close(grads["unmasked"], grads["d_only"], rtol=1e-4, atol=1e-7)
    assert not torch.allclose(grads["masked"], grads["d_only"], rtol=1e-3, atol=1e-6)


def test_thirty_steps_lower_the_loss_and_the_teacher_stays_the_base(tmp_path, base_model, cache):
    cfg = make_config(
        tmp_path,
        base_model,
        cache,
        max_train_steps=30,
        learning_rate=5e-3,
        train_batch_size=4,
        checkpointing_steps=10,
        checkpoints_total_limit=2,
    )
    trainer = MVideoTrainer(cfg).setup()
    batch = _batch(trainer, 4)

    def eval_loss():
        trainer.model.eval()
        with torch.no_grad():
            terms = [trainer.compute_loss(batch, 10_000 + k) for k in range(4)]
        trainer.model.train()
        return sum(t.diffusion.item() for t in terms) / len(terms)

    before = eval_loss()
    result = trainer.train()
    after = eval_loss()
    assert len(result.history) == 30
    assert [d.name for d in trainer.checkpoint_dirs()] == ["checkpoint-20", "checkpoint-30"]  # the limit prunes
    assert TrainConfig.from_file(Path(cfg.output_dir) / "train_config.json") == cfg
    assert after < 0.8 * before, (before, after)
    assert all(h["loss_consistency"] >= 0 for h in result.history) and result.history[-1]["loss_consistency"] > 0
    noisy, t, base_out = _base_prediction(base_model, batch, torch.Generator().manual_seed(5))
    trainer.model.eval()
    assert torch.equal(_teacher_prediction(trainer, batch, noisy, t), base_out)


def test_resume_gives_the_same_next_losses(tmp_path, base_model, cache):
    common = dict(max_train_steps=6, checkpointing_steps=3, gradient_accumulation_steps=2, condition_dropout=0.5)
    full = MVideoTrainer(make_config(tmp_path / "a", base_model, cache, **common)).train().history
    assert (tmp_path / "a" / "run" / "checkpoint-3" / "trainable.safetensors").is_file()
    resumed = MVideoTrainer(make_config(tmp_path / "a", base_model, cache, **common, resume_from_checkpoint="latest"))
    # "latest" is checkpoint-6 now: resume from checkpoint-3 explicitly instead
    resumed.config.resume_from_checkpoint = str(tmp_path / "a" / "run" / "checkpoint-3")
    resumed.config.output_dir = str(tmp_path / "b")
    history = resumed.train().history
    assert resumed.state.global_step == 6
    assert len(history) == 3
    for a, b in zip(full[3:], history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-7)
        assert a["loss_consistency"] == pytest.approx(b["loss_consistency"], rel=1e-5, abs=1e-9)


def test_exported_weights_load_in_the_pipeline(tmp_path, base_model, cache):
    from mvideo_core.weights import load_mvideo_pipeline

    trainer = MVideoTrainer(make_config(tmp_path, base_model, cache, max_train_steps=3, learning_rate=1e-2))
    result = trainer.train()
    assert result.weights_path == Path(trainer.config.output_dir) / "mvideo.safetensors"
    pipe = load_mvideo_pipeline(base_model, result.weights_path)
    batch = _batch(trainer)
    noisy, t = batch["latents"], torch.tensor([500, 900])
    trainer.model.eval()
    with torch.no_grad():
        want = trainer._forward(noisy, batch["prompt_embeds"], t, batch["mask_latents"], None)
        got = pipe.transformer(
            hidden_states=noisy,
            encoder_hidden_states=batch["prompt_embeds"],
            timestep=t,
            mask_latents=batch["mask_latents"],
            return_dict=False,
        )[0]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert pipe.transformer.mask_proj.weight.abs().sum() > 0  # the trained mask weights came along


def test_loss_terms_are_logged_to_tensorboard(tmp_path, base_model, cache):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_config(tmp_path, base_model, cache, max_train_steps=2, report_to="tensorboard")
    MVideoTrainer(cfg).train()
    scalars = {}
    for events in (Path(cfg.output_dir) / "logs").rglob("events.out.tfevents.*"):  # accelerate adds an hparams file
        acc = EventAccumulator(str(events))
        acc.Reload()
        scalars.update({tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]})
    for tag in ("loss", "loss_diffusion", "loss_consistency", "lr"):
        assert scalars[tag] == [1, 2]


def test_fp16_without_a_gpu_is_a_clear_error(tmp_path, base_model, cache):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="fp16' needs a CUDA GPU"):
        MVideoTrainer(make_config(tmp_path, base_model, cache, mixed_precision="fp16")).setup()


def test_cache_of_another_geometry_is_refused(tmp_path, base_model, cache):
    with pytest.raises(CacheError, match="another geometry"):
        MVideoTrainer(make_config(tmp_path, base_model, cache, num_frames=13)).setup()


def test_train_cli_runs_from_a_config_file(tmp_path, base_model, cache, capsys):
    import yaml

    from mvideo_core import train

    cfg = make_config(tmp_path, base_model, cache, max_train_steps=1)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert train.main(["--config", str(path), "--set", "max_train_steps=2"]) == 0
    assert "mvideo.safetensors" in capsys.readouterr().out
    assert (Path(cfg.output_dir) / "mvideo.safetensors").is_file()


def test_bf16_keeps_the_base_in_bf16_and_trains_fp32_weights(tmp_path, base_model, cache):
    trainer = MVideoTrainer(make_config(tmp_path, base_model, cache, mixed_precision="bf16")).setup()
    params = dict(trainer.unwrapped.named_parameters())
    assert {params[n].dtype for n in trainer.trainable_names} == {torch.float32}
    assert {p.dtype for n, p in params.items() if n not in set(trainer.trainable_names)} == {torch.bfloat16}
    terms = trainer.compute_loss(_batch(trainer))
    assert terms.consistency.item() == 0.0 and torch.isfinite(terms.total)
    trainer.accelerator.backward(terms.total)
    assert all(params[n].grad is not None for n in trainer.trainable_names)


def test_resume_from_a_missing_checkpoint_is_a_clear_error(tmp_path, base_model, cache):
    cfg = make_config(tmp_path, base_model, cache, resume_from_checkpoint=str(tmp_path / "checkpoint-7"))
    with pytest.raises(ConfigError, match="checkpoint-7 does not exist"):
        MVideoTrainer(cfg).setup()


def test_resume_latest_without_checkpoints_starts_fresh(tmp_path, base_model, cache):
    trainer = MVideoTrainer(make_config(tmp_path, base_model, cache, resume_from_checkpoint="latest")).setup()
    assert trainer.state.global_step == 0


# -- the cost model (mvideo_core.training.cost) counts what the trainer runs ----------------------------------------


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
