"""Training checkpoints without pickles: tensors in safetensors, everything else in JSON (issue 26).

A `checkpoint-N/` folder holds

- `trainable.safetensors`: the trained weights (LoRA + MVideo modules) by parameter name, full (not sharded);
- `optimizer.safetensors`: the optimizer's per-parameter state (`<name>/exp_avg`, `<name>/exp_avg_sq`, `<name>/step`);
- `state.json`: the position in the run, the LR scheduler, the optimizer's hyper-parameters, the world size it ran on.

Nothing in it is unpickled on resume, so a crafted file dropped into the folder (accelerate's `custom_checkpoint_0.pkl`,
`random_states_0.pkl`, `optimizer.bin`, ...) is never read. The full weights and optimizer state are gathered with
`torch.distributed.checkpoint.state_dict` (one call for one process, DDP and FSDP2 alike), so a checkpoint written by
two processes resumes on one or on eight. Only the trained weights are written: the frozen base is not copied.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import torch

from mvideo_core.training.config import ConfigError

WEIGHTS_FILE = "trainable.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
FORMAT = "mvideo-train-checkpoint"
FORMAT_VERSION = 1


def _full_options(**extra):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, **extra)


def _raw_optimizer(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps the torch one


def _is_deepspeed(model) -> bool:
    return type(model).__name__ == "DeepSpeedEngine"


def _trained_params(model) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.module.named_parameters() if p.requires_grad}


def gather_trainable(model) -> dict[str, torch.Tensor]:
    """Full (gathered) trained weights by name; collective under FSDP and DeepSpeed: call on every process.

    The tensors are fp32 on the CPU on the main process (process 0); other processes may get an empty dict.
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    if _is_deepspeed(model):  # ZeRO keeps the fp32 master weights partitioned in its optimizer
        from deepspeed.utils import safe_get_full_fp32_param

        state = {n: safe_get_full_fp32_param(p) for n, p in _trained_params(model).items()}
    else:
        state = get_model_state_dict(model, options=_full_options(ignore_frozen_params=True))
    return {k: v.detach().float().cpu().contiguous() for k, v in state.items()}


def _deepspeed_optimizer_state(model, optimizer) -> dict[str, Any]:
    """The `get_optimizer_state_dict` layout (state by parameter name, param_groups) gathered from ZeRO partitions."""
    from deepspeed.utils import safe_get_full_optimizer_state

    inner = _raw_optimizer(optimizer)
    base = getattr(inner, "optimizer", inner)  # DeepSpeedZeroOptimizer wraps the torch optimizer
    steps = [v["step"] for v in base.state.values() if "step" in v]
    step = steps[0].detach().float().cpu() if steps else torch.tensor(0.0)
    state = {}
    for name, param in _trained_params(model).items():
        state[name] = {key: safe_get_full_optimizer_state(param, key) for key in ("exp_avg", "exp_avg_sq")}
        state[name]["step"] = step.clone()
    groups = [{k: v for k, v in g.items() if k != "params"} for g in base.param_groups]
    return {"state": state, "param_groups": groups}


def _check_json(value: Any, where: str) -> Any:
    """Refuse NaN/inf (JSON has no spelling for them) so a state file always reads back as it was written."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}; a checkpoint cannot store non-finite numbers")
    if isinstance(value, dict):
        return {str(k): _check_json(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_check_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"{where} holds a {type(value).__name__}, which a JSON checkpoint cannot store")


def save_checkpoint(
    folder: str | Path, accelerator, model, optimizer, lr_scheduler, train_state: dict[str, int]
) -> Path:
    """Write `folder` (call on every process; the main process writes). Written beside it, then renamed into place,
    so a run killed while saving never leaves a half checkpoint that `latest` would pick."""
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    folder = Path(folder)
    weights = gather_trainable(model)
    if _is_deepspeed(model):
        optim = _deepspeed_optimizer_state(model, optimizer)
    else:
        optim = get_optimizer_state_dict(model, _raw_optimizer(optimizer), options=_full_options())
    if accelerator.is_main_process:
        tensors, scalars = {}, {}
        for name, entries in optim["state"].items():
            for key, value in entries.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"{name}/{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars[f"{name}/{key}"] = _check_json(value, f"optimizer state {name}/{key}")
        state = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "train_state": _check_json(dict(train_state), "train_state"),
            "lr_scheduler": _check_json(lr_scheduler.state_dict(), "lr_scheduler"),
            "optimizer_param_groups": _check_json(optim["param_groups"], "optimizer param_groups"),
            "optimizer_scalars": scalars,
            "num_processes": accelerator.num_processes,
        }
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(weights, str(tmp / WEIGHTS_FILE))
        save_file(tensors, str(tmp / OPTIMIZER_FILE))
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    accelerator.wait_for_everyone()
    return folder


def _read(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    for name in (WEIGHTS_FILE, OPTIMIZER_FILE, STATE_FILE):
        if not (folder / name).is_file():
            raise ConfigError(
                f"checkpoint {folder} has no {name}: it was not written by this trainer (or the save was cut off); "
                "resume from another checkpoint-N folder"
            )
    try:
        weights = load_file(str(folder / WEIGHTS_FILE))
        optim = load_file(str(folder / OPTIMIZER_FILE))
    except (SafetensorError, OSError, ValueError) as err:
        raise ConfigError(f"checkpoint {folder} is damaged ({err}); resume from another checkpoint-N folder") from err
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"checkpoint {folder}/{STATE_FILE} is not valid JSON ({err})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"checkpoint {folder}/{STATE_FILE} is not an MVideo training checkpoint")
    if state.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"checkpoint {folder} has format version {state.get('format_version')}; this trainer reads {FORMAT_VERSION}"
        )
    return weights, optim, state


def load_checkpoint(folder: str | Path, model, optimizer, lr_scheduler, trainable_names: list[str]) -> dict[str, int]:
    """Load `folder` into the prepared model, optimizer and scheduler (every process reads it); returns the saved
    train state. A checkpoint made with another LoRA rank, base model or target list is refused by name."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    folder = Path(folder)
    weights, optim_tensors, state = _read(folder)
    missing = sorted(set(trainable_names) - set(weights))
    if missing:
        raise ConfigError(f"checkpoint {folder} lacks trained weights {missing[:5]}...; was it made by this config?")
    shapes = _full_shapes(model, trainable_names)
    for name in trainable_names:
        if tuple(weights[name].shape) != shapes[name]:
            raise ConfigError(
                f"checkpoint weight {name} has shape {tuple(weights[name].shape)}, the model {shapes[name]}: "
                "was it made with another lora_rank or base model?"
            )
    weights = {n: weights[n] for n in trainable_names}
    if _is_deepspeed(model):
        _load_deepspeed(model, optimizer, weights, optim_tensors, state)
        lr_scheduler.load_state_dict(state["lr_scheduler"])
        return {k: int(v) for k, v in state["train_state"].items()}
    set_model_state_dict(model, weights, options=_full_options(strict=False))

    per_param: dict[str, dict[str, Any]] = {}
    for key, value in optim_tensors.items():
        name, _, field = key.rpartition("/")
        per_param.setdefault(name, {})[field] = value
    for key, value in state.get("optimizer_scalars", {}).items():
        name, _, field = key.rpartition("/")
        per_param.setdefault(name, {})[field] = value
    groups = state["optimizer_param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optim_state = {"state": per_param, "param_groups": groups}
    try:
        set_optimizer_state_dict(model, _raw_optimizer(optimizer), optim_state, options=_full_options())
    except (KeyError, ValueError, RuntimeError) as err:
        raise ConfigError(f"checkpoint {folder}: the optimizer state does not fit this model ({err})") from err
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    return {k: int(v) for k, v in state["train_state"].items()}


def _load_deepspeed(model, optimizer, weights, optim_tensors, state) -> None:
    """Scatter full weights and Adam moments into ZeRO's partitions (and the module's working copy)."""
    from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state

    inner = _raw_optimizer(optimizer)
    base = getattr(inner, "optimizer", inner)
    for group in base.param_groups:  # torch's Adam creates its state at the first step: create it (zeros) now
        for flat in group["params"]:
            if not base.state.get(flat):
                zeros = torch.zeros_like(flat)
                base.state[flat] = {"step": torch.tensor(0.0), "exp_avg": zeros, "exp_avg_sq": zeros.clone()}
    if hasattr(inner, "_lazy_init_hp_params_optimizer_state"):
        inner._lazy_init_hp_params_optimizer_state()  # let each weight's fragment see the state just made
    params = _trained_params(model)
    for name, param in params.items():
        safe_set_full_fp32_param(param, weights[name])
        with torch.no_grad():
            param.data.copy_(weights[name].to(param.dtype))  # ZeRO-2 keeps full working weights on every process
        for key in ("exp_avg", "exp_avg_sq"):
            if f"{name}/{key}" not in optim_tensors:
                raise ConfigError(f"the checkpoint's optimizer state lacks {name}/{key}")
            safe_set_full_optimizer_state(param, optim_tensors[f"{name}/{key}"], key)
    step = next((v for k, v in optim_tensors.items() if k.endswith("/step")), None)
    for entry in base.state.values():
        if "step" in entry and step is not None:
            entry["step"] = step.clone().to(entry["step"].device, entry["step"].dtype)
    for group, saved in zip(base.param_groups, state["optimizer_param_groups"]):
        group.update({k: tuple(v) if k == "betas" else v for k, v in saved.items() if k != "params"})


def _full_shapes(model, names: list[str]) -> dict[str, tuple[int, ...]]:
    """Unsharded shapes of the named parameters (FSDP2 holds DTensors whose `.shape` is already the full one)."""
    wanted = set(names)
    out = {}
    named = model.module.named_parameters() if _is_deepspeed(model) else model.named_parameters()
    for name, param in named:
        name = name.removeprefix("module.")  # DDP
        if name in wanted:
            out[name] = tuple(param.shape)
    return out
