"""Make sure a run is what its launch asked for: as many processes, and the engine (DDP, FSDP, DeepSpeed) it named.

`accelerate launch` can quietly start less than it was told: `--cpu --num_processes 2` starts ONE process (its CPU
launcher spreads processes only through mpirun), and a DeepSpeed config run with `ACCELERATE_USE_CPU=1` becomes plain
DDP. The trainer calls `check_environment()` before it builds its `Accelerator` and `verify()` after, and refuses such
runs with the command that does what was meant; `describe()` is what `launch.json` records for every run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from mvideo_core.training.config import ConfigError

CPU_HINT = (
    "to train on N CPU processes use a shipped config without --cpu, e.g. "
    "ACCELERATE_USE_CPU=1 accelerate launch --config_file configs/accelerate_ddp.yaml --num_processes 2 "
    "-m mvideo_core.train --config ...  (or torchrun --nproc_per_node 2 -m mvideo_core.train --config ...)"
)
_WORLD_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "false").strip().lower() in ("1", "true", "yes")


def check_environment(env: Mapping[str, str] | None = None) -> None:
    """Refuse launches that accelerate would silently shrink, before anything is loaded."""
    env = os.environ if env is None else env
    cpu = _flag(env, "ACCELERATE_USE_CPU")
    if cpu and "MASTER_ADDR" in env and not any(v in env for v in (*_WORLD_VARS, "RANK", "LOCAL_RANK")):
        raise ConfigError(
            "`accelerate launch --cpu --num_processes N` starts only one process (accelerate spreads CPU processes "
            f"through mpirun only); {CPU_HINT}"
        )
    if cpu and _flag(env, "ACCELERATE_USE_DEEPSPEED"):
        raise ConfigError(
            "a DeepSpeed launch with ACCELERATE_USE_CPU set runs plain DDP, not DeepSpeed; unset ACCELERATE_USE_CPU "
            "(on a machine without a GPU the trainer runs DeepSpeed's CPU accelerator over gloo by itself)"
        )


def accelerator_kwargs_handlers() -> list[Any]:
    """Extra accelerate kwargs handlers: DeepSpeed without a GPU communicates over gloo (accelerate assumes nccl)."""
    import torch
    from accelerate.utils import InitProcessGroupKwargs

    if _flag(os.environ, "ACCELERATE_USE_DEEPSPEED") and not torch.cuda.is_available():
        return [InitProcessGroupKwargs(backend="gloo")]
    return []


def fsdp_on_cpu(accelerator, env: Mapping[str, str] | None = None) -> None:
    """Turn an FSDP launch on a CPU-only machine into FSDP2 over gloo (how the tests run it).

    accelerate 1.15 switches FSDP on for GPU-like devices only, so `ACCELERATE_USE_CPU=1` with the FSDP config would
    run plain DDP. FSDP2 (`fully_shard`) runs on CPUs over gloo, so here the trainer sets what accelerate sets on a
    GPU: the distributed type and the plugin built from the launch config (`FSDP_*` variables)."""
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    env = os.environ if env is None else env
    if not (_flag(env, "ACCELERATE_USE_FSDP") and accelerator.distributed_type == DistributedType.MULTI_CPU):
        return
    plugin = FullyShardedDataParallelPlugin()
    if plugin.fsdp_version != 2:
        raise ConfigError(
            f"FSDP on CPUs needs `fsdp_version: 2` in the launch config (it has {plugin.fsdp_version}); "
            "configs/accelerate_fsdp.yaml has it"
        )
    if accelerator.mixed_precision != "no":
        plugin.set_mixed_precision(accelerator.mixed_precision)
    from accelerate.state import PartialState

    accelerator.state.fsdp_plugin = plugin
    accelerator.state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # as AcceleratorState.__init__ keeps them


def describe(accelerator) -> dict[str, Any]:
    """What this run is: processes, machines, engine, precision, device (the content of `launch.json`)."""
    from accelerate.utils import DistributedType

    state = accelerator.state
    per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
    info: dict[str, Any] = {
        "num_processes": accelerator.num_processes,
        "num_machines": max(1, accelerator.num_processes // max(1, per_machine)),
        "distributed_type": str(accelerator.distributed_type).split(".")[-1],
        "mixed_precision": accelerator.mixed_precision,
        "device": accelerator.device.type,
    }
    if accelerator.distributed_type == DistributedType.FSDP:
        info["fsdp_version"] = state.fsdp_plugin.fsdp_version
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        info["zero_stage"] = state.deepspeed_plugin.zero_stage
    return info


def verify(accelerator, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Compare what started with what the launcher asked for; raise ConfigError on any difference."""
    env = os.environ if env is None else env
    info = describe(accelerator)
    for var in _WORLD_VARS:
        if var in env and int(env[var]) != info["num_processes"]:
            raise ConfigError(
                f"the launcher started {env[var]} processes ({var}) but the run sees {info['num_processes']}: the "
                f"distributed backend did not start ({info['distributed_type']} on {info['device']}); {CPU_HINT}"
            )
    wanted = {"ACCELERATE_USE_FSDP": "FSDP", "ACCELERATE_USE_DEEPSPEED": "DEEPSPEED"}
    for var, kind in wanted.items():
        if _flag(env, var) and info["distributed_type"] != kind:
            raise ConfigError(f"the launch config asks for {kind} but the run is {info['distributed_type']}")
    return info
