"""Every shipped launch config, started with `accelerate launch --num_processes 2` on the CPU, starts two processes of
the engine it names (DDP, FSDP2, DeepSpeed ZeRO-2) and trains what one process with the same global batch trains:
the same losses and exported weights within float tolerance, checkpoints that resume exactly, and under FSDP the
teacher pass (adapters off) is the frozen base. DeepSpeed's own config class validates the shipped JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from test_training_trainer import make_config, write_tiny_cache

from mvideo_core.training.config import ConfigError, TrainConfig
from mvideo_core.training.launch import check_environment

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
PER_PROCESS_BATCH = 2


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """A tiny model, its cache, the 2-process training YAML and the one-process reference run (global batch 4)."""
    from accelerate.state import AcceleratorState, GradientState

    from mvideo_core.tiny import save_tiny_base_model
    from mvideo_core.training.trainer import MVideoTrainer

    root = tmp_path_factory.mktemp("dist")
    base = str(save_tiny_base_model(root / "base", "2b"))
    cache = str(write_tiny_cache(root / "cache", base))
    cfg = make_config(root, base, cache, max_train_steps=4, checkpointing_steps=2, train_batch_size=PER_PROCESS_BATCH)
    (root / "train.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    single = TrainConfig(
        **{**cfg.to_dict(), "train_batch_size": 2 * PER_PROCESS_BATCH, "output_dir": str(root / "one")}
    )
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    history = MVideoTrainer(single).train(progress=False).history
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    return {"root": root, "yaml": root / "train.yaml", "one": root / "one", "history": history}


def launch(config_file: str, *args: str, cpu: bool = True) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file configs/<file> --num_processes 2 ...` as a user types it (on CPUs)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("ACCELERATE_USE_CPU", None)
    if cpu:
        env["ACCELERATE_USE_CPU"] = "1"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / config_file)]
    cmd += ["--num_processes", "2", "--main_process_port", "0", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def max_diff(a: Path, b: Path) -> float:
    """Largest absolute difference between two safetensors files with the same keys."""
    x, y = load_file(str(a)), load_file(str(b))
    assert sorted(x) == sorted(y)
    return max((x[k].float() - y[k].float()).abs().max().item() for k in x)


def assert_same_losses(history: list[dict], reference: list[dict]) -> None:
    assert len(history) == len(reference)
    for got, want in zip(history, reference):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
        assert got["loss_consistency"] == pytest.approx(want["loss_consistency"], rel=1e-4, abs=1e-9)


@pytest.mark.slow
def test_ddp_config_starts_two_processes_and_trains_what_one_process_trains(run):
    out = run["root"] / "ddp"
    launch(
        "accelerate_ddp.yaml", "-m", "mvideo_core.train", "--config", str(run["yaml"]), "--set", f"output_dir={out}"
    )
    info = json.loads((out / "launch.json").read_text())
    assert (info["num_processes"], info["distributed_type"]) == (2, "MULTI_CPU")
    assert max_diff(out / "mvideo.safetensors", run["one"] / "mvideo.safetensors") < 1e-6
    assert (
        max_diff(out / "checkpoint-2" / "optimizer.safetensors", run["one"] / "checkpoint-2" / "optimizer.safetensors")
        < 1e-7
    )


@pytest.mark.slow
def test_fsdp2_config_shards_trains_resumes_exactly_and_keeps_the_teacher(run):
    root = run["root"]
    child = str(REPO / "tests" / "training_launch_child.py")
    launch("accelerate_fsdp.yaml", child, str(run["yaml"]), str(root / "fsdp.json"), f"output_dir={root / 'fsdp'}")
    resume = [f"output_dir={root / 'fsdp_resumed'}", f"resume_from_checkpoint={root / 'fsdp' / 'checkpoint-2'}"]
    launch("accelerate_fsdp.yaml", child, str(run["yaml"]), str(root / "fsdp_resumed.json"), *resume)
    info = json.loads((root / "fsdp" / "launch.json").read_text())
    assert (info["num_processes"], info["distributed_type"], info["fsdp_version"]) == (2, "FSDP", 2)
    full, resumed = (json.loads((root / f).read_text()) for f in ("fsdp.json", "fsdp_resumed.json"))
    assert full["local_param_fraction"] == pytest.approx(0.5, abs=0.05)  # each process holds half the weights
    # the losses and the weights of one process with the same global batch (measured: rel 8e-8, 9e-8 abs)
    assert_same_losses(full["history"], run["history"])
    assert max_diff(root / "fsdp" / "mvideo.safetensors", run["one"] / "mvideo.safetensors") < 1e-6
    assert (
        max_diff(
            root / "fsdp" / "checkpoint-2" / "trainable.safetensors",
            run["one"] / "checkpoint-2" / "trainable.safetensors",
        )
        < 1e-6
    )
    # resume from checkpoint-2 replays steps 3-4 exactly: same losses, bit-identical weights and optimizer state
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in full["history"][2:]]
    assert max_diff(root / "fsdp_resumed" / "mvideo.safetensors", root / "fsdp" / "mvideo.safetensors") == 0.0
    resumed_opt = root / "fsdp_resumed" / "checkpoint-4" / "optimizer.safetensors"
    assert max_diff(resumed_opt, root / "fsdp" / "checkpoint-4" / "optimizer.safetensors") == 0.0
    # teacher pass under sharding == the frozen base loaded on its own; the trained student is not
    assert full["teacher_vs_base_max_abs"] == 0.0 and full["student_vs_base_max_abs"] > 1e-5


@pytest.mark.slow
def test_deepspeed_zero2_config_trains_what_one_process_trains_and_resumes_exactly(run):
    root = run["root"]
    train = ["-m", "mvideo_core.train", "--config", str(run["yaml"]), "--set"]
    launch("accelerate_deepspeed_zero2.yaml", *train, f"output_dir={root / 'ds'}", cpu=False)
    resume = [f"output_dir={root / 'ds_resumed'}", f"resume_from_checkpoint={root / 'ds' / 'checkpoint-2'}"]
    launch("accelerate_deepspeed_zero2.yaml", *train, *resume, cpu=False)
    info = json.loads((root / "ds" / "launch.json").read_text())
    assert (info["num_processes"], info["distributed_type"], info["zero_stage"]) == (2, "DEEPSPEED", 2)
    assert max_diff(root / "ds" / "mvideo.safetensors", run["one"] / "mvideo.safetensors") < 1e-6
    assert (
        max_diff(
            root / "ds" / "checkpoint-4" / "optimizer.safetensors",
            run["one"] / "checkpoint-4" / "optimizer.safetensors",
        )
        < 1e-7
    )
    assert max_diff(root / "ds_resumed" / "mvideo.safetensors", root / "ds" / "mvideo.safetensors") == 0.0


def _filled_deepspeed_config(world_size: int, **overrides) -> dict:
    """configs/deepspeed_zero2.json with its "auto" values filled as accelerate fills them from the training config."""
    cfg = TrainConfig()
    values = json.loads((CONFIGS / "deepspeed_zero2.json").read_text())
    values["bf16"]["enabled"] = cfg.mixed_precision == "bf16"
    values["fp16"]["enabled"] = cfg.mixed_precision == "fp16"
    values["train_micro_batch_size_per_gpu"] = cfg.train_batch_size
    values["gradient_accumulation_steps"] = cfg.gradient_accumulation_steps
    values["train_batch_size"] = cfg.train_batch_size * cfg.gradient_accumulation_steps * world_size
    values["gradient_clipping"] = cfg.max_grad_norm
    values.update(overrides)
    return values


def test_deepspeed_validates_the_shipped_zero2_config():
    from deepspeed.runtime.config import DeepSpeedConfig

    ds = DeepSpeedConfig(_filled_deepspeed_config(world_size=1))
    assert ds.zero_optimization_stage == 2 and ds.bfloat16_config.enabled
    assert (ds.train_batch_size, ds.train_micro_batch_size_per_gpu, ds.gradient_clipping) == (2, 2, 1.0)
    assert ds.zero_config.overlap_comm and ds.zero_config.contiguous_gradients
    # the same class refuses what is wrong (so the check above can fail)
    with pytest.raises(AssertionError, match="train_batch_size is not equal"):
        DeepSpeedConfig(_filled_deepspeed_config(world_size=1, train_batch_size=3))
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        DeepSpeedConfig(_filled_deepspeed_config(world_size=1, zero_optimization={"stage": 2, "reduce_bucket": 1}))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"},
            "starts only one process",
        ),
        ({"ACCELERATE_USE_CPU": "1", "ACCELERATE_USE_DEEPSPEED": "true", "WORLD_SIZE": "2"}, "runs plain DDP"),
    ],
)
def test_launches_that_accelerate_would_shrink_are_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        check_environment(env)
    check_environment({"ACCELERATE_USE_CPU": "True"})  # one CPU process, as asked
    check_environment({"ACCELERATE_USE_CPU": "1", "MASTER_ADDR": "h", "WORLD_SIZE": "2", "RANK": "0"})  # torchrun


def test_accelerate_launch_cpu_with_two_processes_is_a_clear_error(run):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2"]
    cmd += ["-m", "mvideo_core.train", "--config", str(run["yaml"])]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode != 0, proc.stderr[-3000:]
    assert "returned non-zero exit status 2" in proc.stderr  # the trainer's exit code, through the launcher
    assert "error: `accelerate launch --cpu --num_processes N` starts only one process" in proc.stderr
    assert "mvideo_core/" not in proc.stderr  # no traceback from our code (the launcher prints its own)
    assert "configs/accelerate_ddp.yaml --num_processes 2" in proc.stderr


def test_shipped_accelerate_configs_name_the_engines_they_claim():
    expected = {
        "accelerate_ddp.yaml": "MULTI_GPU",
        "accelerate_fsdp.yaml": "FSDP",
        "accelerate_deepspeed_zero2.yaml": "DEEPSPEED",
    }
    for name, kind in expected.items():
        values = yaml.safe_load((CONFIGS / name).read_text())
        assert values["distributed_type"] == kind and values["num_processes"] == 8
    assert yaml.safe_load((CONFIGS / "accelerate_fsdp.yaml").read_text())["fsdp_config"]["fsdp_version"] == 2
