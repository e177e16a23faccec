"""LoRA fine-tuning of CogVideoX into MVideo (paper 3.4 and 4.1), on one device or many through `accelerate`.

The base transformer is frozen; peft LoRA adapters on the attention projections and the MVideo modules (the
zero-initialised mask input channels, the condition embeddings and gates) are trained with L = L_d + alpha * L_c. The
teacher of L_c is the same module in `teacher_mode()` (adapters off, mask and conditions dropped), which equals the
frozen base model: no second copy of the weights. Checkpoints (`training/checkpoint.py`: safetensors + JSON, no
pickles) hold only the trainable weights, optimizer, scheduler and the step; all randomness of a step (data order, timesteps, noise, condition
dropout) is a function of (seed, step), so a resumed run continues with exactly the losses of an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from mvideo_core.training import launch
from mvideo_core.training.checkpoint import gather_trainable, load_checkpoint, save_checkpoint
from mvideo_core.training.config import ConfigError, TrainConfig
from mvideo_core.training.dataset import EpochSampler, LatentCacheDataset, collate_samples
from mvideo_core.training.losses import LossTerms, mvideo_loss
from mvideo_core.training.precompute import CacheGeometry

logger = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Where the run is; saved in every checkpoint next to the optimizer and scheduler."""

    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0

    def state_dict(self) -> dict[str, int]:
        return {"global_step": self.global_step, "epoch": self.epoch, "batches_in_epoch": self.batches_in_epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.global_step = int(state["global_step"])
        self.epoch = int(state["epoch"])
        self.batches_in_epoch = int(state["batches_in_epoch"])


@dataclass
class TrainResult:
    """What `train()` did: the exported weights file and the loss terms logged per optimizer step."""

    weights_path: Path | None
    history: list[dict[str, float]] = field(default_factory=list)


def _weight_dtype(mixed_precision: str) -> torch.dtype:
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision, torch.float32)


def step_generator(seed: int, global_step: int, micro_step: int, sample: int | None = None) -> torch.Generator:
    """The CPU generator of one draw: a pure function of where the run is, so resume replays it exactly.

    `sample` is the index of a sample in the global batch (its timestep and noise come from its own generator, so
    two processes with batch 2 draw exactly what one process with batch 4 draws); None: draws shared by the whole
    global micro-batch (condition dropout)."""
    key = ((seed * 1_000_003 + global_step) * 131 + micro_step) * 65_537 + (0 if sample is None else sample + 1)
    return torch.Generator().manual_seed(key)


def _keep_gathered_through_backward(model) -> list:
    """FSDP2 units that must stay gathered until a step's backward has finished; the trainer reshards them after it.

    With conditions, every block runs twice in one forward (condition tokens, then clip tokens reading the condition
    keys/values). FSDP2 reshards a unit when the backward of ONE of its calls reaches that call's inputs, which can
    happen while the other call's backward still needs the weights ("data is not allocated yet"). So the blocks skip
    the reshard after backward (gradients are still reduce-scattered as they come) and are resharded explicitly once
    the backward is done: the forward stays sharded block by block; the backward holds the gathered blocks."""
    from torch.distributed.fsdp import FSDPModule

    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for unit in units:
        unit.set_reshard_after_backward(False, recurse=False)
    return units


class MVideoTrainer:
    """`MVideoTrainer(config).train()`. Build pieces separately (`setup()`, `training_step()`) in tests and benches."""

    def __init__(self, config: TrainConfig, accelerator=None):
        self.config = config
        self.accelerator = accelerator
        self.state = TrainState()
        self.history: list[dict[str, float]] = []
        self._ready = False

    # -- 1. setup ---------------------------------------------------------------------------------------------
    def _make_accelerator(self):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

        cfg = self.config
        launch.check_environment()
        if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
            raise ConfigError(
                "mixed_precision 'fp16' needs a CUDA GPU and none is available; use mixed_precision: 'no' (or 'bf16')"
            )
        if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
            # configs/deepspeed_zero2.json says "auto": make DeepSpeed follow this config, not the launcher defaults
            os.environ["ACCELERATE_GRADIENT_ACCUMULATION_STEPS"] = str(cfg.gradient_accumulation_steps)
            os.environ["ACCELERATE_GRADIENT_CLIPPING"] = str(cfg.max_grad_norm)
        out = Path(cfg.output_dir)
        project = ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs"))
        accelerator = Accelerator(
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            mixed_precision=cfg.mixed_precision,
            log_with=None if cfg.report_to in ("none", "", None) else cfg.report_to,
            project_config=project,
            kwargs_handlers=[
                DistributedDataParallelKwargs(find_unused_parameters=True),
                *launch.accelerator_kwargs_handlers(),
            ],
        )
        launch.fsdp_on_cpu(accelerator)
        launch.verify(accelerator)
        return accelerator

    def load_model(self):
        """Frozen base CogVideoX -> MVideo transformer with LoRA; returns it with only LoRA + MVideo params trainable."""
        from diffusers import CogVideoXDPMScheduler, CogVideoXTransformer3DModel
        from peft import LoraConfig

        from mvideo_core.transformer import MVideoTransformer3DModel

        cfg = self.config
        dtype = self.weight_dtype
        base = CogVideoXTransformer3DModel.from_pretrained(cfg.base_model, subfolder="transformer", torch_dtype=dtype)
        model = MVideoTransformer3DModel.from_cogvideox(base)
        model.requires_grad_(False)
        model.add_adapter(
            LoraConfig(
                r=cfg.lora_rank,
                lora_alpha=cfg.lora_alpha,
                init_lora_weights=True,
                target_modules=list(cfg.lora_target_modules),
            )
        )
        for param in model.mvideo_parameters():
            param.requires_grad_(cfg.train_mask_weights)
        for param in model.parameters():  # trainable weights stay in fp32 under mixed precision
            if param.requires_grad:
                param.data = param.data.float()
        if cfg.gradient_checkpointing:
            model.enable_gradient_checkpointing()
        self.scheduler = CogVideoXDPMScheduler.from_pretrained(cfg.base_model, subfolder="scheduler")
        return model

    def setup(self) -> MVideoTrainer:
        """1. accelerator, 2. model, 3. data, 4. optimizer and LR schedule, 5. prepare, hooks, trackers, resume."""
        if self._ready:
            return self
        from accelerate.utils import DistributedType, set_seed
        from diffusers.optimization import get_scheduler

        cfg = self.config
        # 1. Accelerator
        if self.accelerator is None:
            self.accelerator = self._make_accelerator()
        acc = self.accelerator
        # Frozen weights are stored in the compute dtype (the diffusers recipe); FSDP needs one dtype per flat
        # parameter, so there everything stays fp32 and FSDP's mixed-precision policy casts for compute.
        fsdp = acc.distributed_type == DistributedType.FSDP
        self.weight_dtype = torch.float32 if fsdp else _weight_dtype(acc.mixed_precision)
        set_seed(cfg.seed)
        if cfg.allow_tf32 and torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = True

        # 2. Model
        model = self.load_model().to(acc.device)
        self.trainable_names = [n for n, p in model.named_parameters() if p.requires_grad]
        if not self.trainable_names:
            raise ConfigError("nothing to train: no LoRA target matched; check `lora_target_modules`")

        # 3. Data
        self.dataset = LatentCacheDataset(cfg.cache_dir, CacheGeometry.from_config(cfg), cfg.base_model)
        self.sampler = EpochSampler(len(self.dataset), cfg.seed)
        dataloader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=cfg.train_batch_size,
            sampler=self.sampler,
            collate_fn=collate_samples,
            num_workers=cfg.dataloader_num_workers,
            drop_last=len(self.dataset) >= cfg.train_batch_size * acc.num_processes,
        )

        # 4. Optimizer and LR schedule (Adam at 2e-4 in the paper)
        params = [p for p in model.parameters() if p.requires_grad]
        opt_cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        optimizer = opt_cls(
            params,
            lr=cfg.learning_rate,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            eps=cfg.adam_epsilon,
            weight_decay=cfg.weight_decay,
        )
        lr_scheduler = get_scheduler(
            cfg.lr_scheduler,
            optimizer=optimizer,
            num_warmup_steps=cfg.lr_warmup_steps * acc.num_processes,
            num_training_steps=cfg.max_train_steps * acc.num_processes,
        )

        # 5. Prepare, checkpoint hooks, trackers
        self.model, self.optimizer, self.dataloader, self.lr_scheduler = acc.prepare(
            model, optimizer, dataloader, lr_scheduler
        )
        self._fsdp_units = _keep_gathered_through_backward(self.model) if fsdp else []
        if acc.is_main_process:
            cfg.save(Path(cfg.output_dir) / "train_config.json")  # what this run was, next to its checkpoints
            run = launch.describe(acc)  # and what it ran on
            (Path(cfg.output_dir) / "launch.json").write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
            logger.info("training on %s", run)
        if acc.is_main_process and cfg.report_to not in ("none", "", None):
            flat = {k: (v if isinstance(v, int | float | str | bool) else str(v)) for k, v in cfg.to_dict().items()}
            acc.init_trackers("mvideo-lora", config=flat)
        self._ready = True
        if cfg.resume_from_checkpoint:
            self.resume(cfg.resume_from_checkpoint)
        return self

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    # -- 2. checkpoints -----------------------------------------------------------------------------------------
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the trained weights (LoRA + MVideo modules), by name, full; collective under FSDP (every process)."""
        return gather_trainable(self.model)

    def checkpoint_dirs(self) -> list[Path]:
        out = Path(self.config.output_dir)
        dirs = [d for d in out.glob("checkpoint-*") if d.is_dir() and d.name.split("-")[-1].isdigit()]
        return sorted(dirs, key=lambda d: int(d.name.split("-")[-1]))

    def save_checkpoint(self) -> Path:
        cfg = self.config
        path = Path(cfg.output_dir) / f"checkpoint-{self.state.global_step}"
        if self.accelerator.is_main_process and cfg.checkpoints_total_limit is not None:
            existing = self.checkpoint_dirs()
            for old in existing[: max(0, len(existing) - cfg.checkpoints_total_limit + 1)]:
                shutil.rmtree(old)
        return save_checkpoint(
            path, self.accelerator, self.model, self.optimizer, self.lr_scheduler, self.state.state_dict()
        )

    def resume(self, checkpoint: str | Path) -> None:
        """Load a checkpoint folder, or the newest one under output_dir with "latest"."""
        if str(checkpoint) == "latest":
            dirs = self.checkpoint_dirs()
            if not dirs:
                logger.info(
                    "resume_from_checkpoint=latest: no checkpoint in %s, starting fresh", self.config.output_dir
                )
                return
            checkpoint = dirs[-1]
        checkpoint = Path(checkpoint)
        if not checkpoint.is_dir():
            raise ConfigError(f"checkpoint {checkpoint} does not exist; give a checkpoint-N folder or 'latest'")
        saved = load_checkpoint(checkpoint, self.model, self.optimizer, self.lr_scheduler, self.trainable_names)
        self.state.load_state_dict(saved)
        logger.info("resumed from %s at step %d", checkpoint, self.state.global_step)

    # -- 3. one micro-batch ------------------------------------------------------------------------------------
    def _forward(self, noisy, prompt_embeds, timesteps, mask_latents, conditions) -> torch.Tensor:
        return self.model(
            hidden_states=noisy,
            encoder_hidden_states=prompt_embeds,
            timestep=timesteps,
            mask_latents=mask_latents,
            condition_latents=conditions,
            return_dict=False,
        )[0]

    def step_draws(
        self, batch_size: int, shape: tuple[int, ...], global_step: int, micro_step: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(timesteps [B], noise [B, *shape] fp32, keep_conditions) of this process's part of a global micro-batch.

        Sample i of process p is sample p * B + i of the global batch (accelerate's batch sharding): its draws do not
        depend on how many processes share the batch."""
        cfg = self.config
        first = self.accelerator.process_index * batch_size
        keep = (
            torch.rand((), generator=step_generator(cfg.seed, global_step, micro_step)).item() >= cfg.condition_dropout
        )
        timesteps, noise = [], []
        for i in range(batch_size):
            g = step_generator(cfg.seed, global_step, micro_step, first + i)
            timesteps.append(torch.randint(0, self.scheduler.config.num_train_timesteps, (1,), generator=g))
            noise.append(torch.randn(shape, generator=g, dtype=torch.float32))
        return torch.cat(timesteps), torch.stack(noise), keep

    def compute_loss(self, batch: dict[str, Any], global_step: int = 0, micro_step: int = 0) -> LossTerms:
        """Eq. 2 on one micro-batch: noise the latents, student forward, teacher forward (no grad), losses."""
        from mvideo_core.transformer import ConditionLatents

        cfg = self.config
        device, dtype = self.accelerator.device, self.weight_dtype
        latents = batch["latents"].to(device, dtype)  # [B, F, C, H, W]
        mask_latents = batch["mask_latents"].to(device, dtype)  # [B, F, C, H, W]
        prompt_embeds = batch["prompt_embeds"].to(device, dtype)  # [B, L, D]
        timesteps, noise, keep_conditions = self.step_draws(
            latents.shape[0], latents.shape[1:], global_step, micro_step
        )
        timesteps, noise = timesteps.to(device), noise.to(device, dtype)  # [B], [B, F, C, H, W]
        conditions = None
        if keep_conditions and "motion" in batch:
            conditions = ConditionLatents(
                appearance=batch["appearance"].to(device, dtype),  # [B, 1, C, H, W]
                motion=batch["motion"].to(device, dtype),  # [B, Fc, C, h, w]
            )
        noisy = self.scheduler.add_noise(latents, noise, timesteps)  # [B, F, C, H, W]
        with self.accelerator.autocast():
            pred = self._forward(noisy, prompt_embeds, timesteps, mask_latents, conditions)
            teacher, student_free = None, None
            if cfg.consistency_weight > 0:
                with torch.no_grad(), self.unwrapped.teacher_mode():
                    teacher = self._forward(noisy, prompt_embeds, timesteps, None, None)
                if cfg.consistency_inputs == "unmasked":  # the student as Table 4 runs it: text only
                    student_free = self._forward(noisy, prompt_embeds, timesteps, None, None)
        return mvideo_loss(
            pred, noisy, latents, timesteps, self.scheduler, teacher, cfg.consistency_weight, student_free
        )

    # -- 4. the loop ----------------------------------------------------------------------------------------------
    def train(self, progress: bool = True, end: bool = True) -> TrainResult:
        """Run to `max_train_steps` (continuing a resumed run), checkpoint every N steps, export the weights;
        `progress` False hides the step bar (scripts and logs). `end` False keeps the process group (and so a
        sharded model's forward) alive for the caller, who calls `accelerator.end_training()` on every process."""
        self.setup()
        cfg, acc = self.config, self.accelerator
        num_batches = len(self.dataloader)
        if num_batches == 0:
            raise ConfigError(f"the cache holds {len(self.dataset)} samples, fewer than one batch")
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        bar = tqdm(
            total=cfg.max_train_steps,
            initial=self.state.global_step,
            desc="train",
            disable=not (progress and acc.is_local_main_process),
        )
        self.model.train()
        micro, window = 0, []
        while self.state.global_step < cfg.max_train_steps:
            if self.state.batches_in_epoch >= num_batches:
                self.state.epoch, self.state.batches_in_epoch = self.state.epoch + 1, 0
            loader = self.dataloader
            if self.state.batches_in_epoch:
                loader = acc.skip_first_batches(self.dataloader, self.state.batches_in_epoch)
            # accelerate's loaders set the sampler's epoch from their own iteration count on every pass: pin it to
            # ours, so the data order is a function of the step (and a resumed run replays it)
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(self.state.epoch)
            self.sampler.set_epoch(self.state.epoch)
            for batch in loader:
                with acc.accumulate(self.model):
                    terms = self.compute_loss(batch, self.state.global_step, micro)
                    acc.backward(terms.total)
                    for unit in self._fsdp_units:  # see _keep_gathered_through_backward
                        unit.reshard()
                    if acc.sync_gradients and cfg.max_grad_norm > 0:
                        acc.clip_grad_norm_(trainable, cfg.max_grad_norm)
                    self.optimizer.step()
                    self.lr_scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                self.state.batches_in_epoch += 1
                micro += 1
                window.append(terms.as_log())
                if not acc.sync_gradients:
                    continue
                self.state.global_step += 1
                logs = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
                if acc.num_processes > 1:  # log the mean over processes, not process 0's batch
                    means = acc.reduce(torch.tensor(list(logs.values()), device=acc.device), reduction="mean")
                    logs = dict(zip(logs, means.tolist()))
                logs["lr"] = self.lr_scheduler.get_last_lr()[0]
                self.history.append(logs)
                micro, window = 0, []
                bar.update(1)
                bar.set_postfix(loss=f"{logs['loss']:.4f}", l_c=f"{logs['loss_consistency']:.4f}")
                if self.state.global_step % cfg.logging_steps == 0:
                    acc.log(logs, step=self.state.global_step)
                if self.state.global_step % cfg.checkpointing_steps == 0:
                    self.save_checkpoint()
                if self.state.global_step >= cfg.max_train_steps:
                    break
        bar.close()
        acc.wait_for_everyone()
        weights = self.export()
        if end:
            acc.end_training()
        return TrainResult(weights, self.history)

    # -- 5. export ------------------------------------------------------------------------------------------------
    def export(self, path: str | Path | None = None) -> Path | None:
        """Write the MVideo weights file (LoRA in peft key names + MVideo modules) that `MVideoPipeline` loads.

        Call it on every process: under FSDP the full weights are gathered collectively; the main process writes.
        """
        from accelerate.utils import DistributedType

        from mvideo_core.weights import save_mvideo_weights

        cfg, acc = self.config, self.accelerator
        model = self.unwrapped
        if acc.distributed_type == DistributedType.FSDP:
            trained = gather_trainable(self.model)  # collective: every process takes part, the main one gets it all
            if acc.is_main_process:
                model = self.load_model()  # a plain CPU copy of the frozen base to hold the gathered weights
                missing = set(self.trainable_names) - set(trained)
                if missing:
                    raise RuntimeError(f"FSDP state dict lacks trained weights {sorted(missing)[:5]}")
                model.load_state_dict({n: trained[n] for n in self.trainable_names}, strict=False)
        if not acc.is_main_process:
            return None
        path = Path(path) if path else Path(cfg.output_dir) / cfg.export_name
        extra = {
            "steps": self.state.global_step,
            "consistency_weight": cfg.consistency_weight,
            "consistency_inputs": cfg.consistency_inputs,
            "trainer": "mvideo_core",
        }
        return save_mvideo_weights(model, path, base_model=cfg.base_model, extra_metadata=extra)
