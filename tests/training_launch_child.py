"""Run under `accelerate launch` by tests/test_training_distributed.py: train through the real trainer, then check
the teacher pass (adapters off) under the launch's sharding against the frozen base loaded on its own; process 0
writes what it saw as JSON. Usage: training_launch_child.py CONFIG.yaml OUT.json [key=value ...]"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def main(config: str, out: str, overrides: list[str]) -> None:
    from mvideo_core.training.config import TrainConfig
    from mvideo_core.training.trainer import MVideoTrainer

    trainer = MVideoTrainer(TrainConfig.from_file(config, overrides))
    result = trainer.train(progress=False, end=False)  # the checks below run the sharded model: keep its group
    try:
        check(trainer, result, out)
    finally:  # every process, together: a process leaving with its group alive aborted its peer (SIGABRT)
        trainer.accelerator.wait_for_everyone()
        trainer.accelerator.end_training()


def check(trainer, result, out: str) -> None:
    """The teacher and student passes under the launch's sharding; process 0 compares them with the frozen base."""
    from diffusers import CogVideoXTransformer3DModel

    from mvideo_core.training.dataset import collate_samples

    params = [p for p in trainer.model.parameters()]
    local = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in params)
    batch = collate_samples([trainer.dataset[i] for i in range(2)])
    t = torch.tensor([100, 700])
    noise = torch.randn(batch["latents"].shape, generator=torch.Generator().manual_seed(5))
    noisy = trainer.scheduler.add_noise(batch["latents"], noise, t)
    trainer.model.eval()
    with torch.no_grad():
        with trainer.unwrapped.teacher_mode():
            teacher = trainer._forward(noisy, batch["prompt_embeds"], t, batch["mask_latents"], None)
        student = trainer._forward(noisy, batch["prompt_embeds"], t, None, None)
    if not trainer.accelerator.is_main_process:
        return
    base = CogVideoXTransformer3DModel.from_pretrained(trainer.config.base_model, subfolder="transformer").eval()
    with torch.no_grad():
        want = base(hidden_states=noisy, encoder_hidden_states=batch["prompt_embeds"], timestep=t, return_dict=False)[
            0
        ]
    report = {
        "history": result.history,
        "weights": str(result.weights_path),
        "local_param_fraction": local / sum(p.numel() for p in params),
        "teacher_vs_base_max_abs": (teacher.float() - want).abs().max().item(),
        "student_vs_base_max_abs": (student.float() - want).abs().max().item(),
    }
    Path(out).write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
