"""The one typed training config: paper defaults (section 4.1), read from YAML or JSON, checked before any work.

`accelerate launch -m mvideo_core.train --config my.yaml [--set key=value ...]` parses exactly this object.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mvideo_core.clip_spec import COGVIDEOX_CLIP as CLIP


class ConfigError(ValueError):
    """A training config is malformed; the message names the key, the value and what is expected."""


@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults follow the MVideo paper: LoRA on CogVideoX, Adam at lr 2e-4 for
    10k steps, 480x720 at 8 fps, 4 s clips (33 frames), conditions at 256x384, consistency weight alpha = 1.0."""

    # -- data -------------------------------------------------------------------------------------------------
    cache_dir: str = ""  # latent cache written by `python -m mvideo_core.training.precompute`
    output_dir: str = "mvideo-lora"
    dataloader_num_workers: int = 0

    # -- model ------------------------------------------------------------------------------------------------
    base_model: str = "THUDM/CogVideoX-5b"  # diffusers folder or hub id (transformer/, scheduler/ subfolders)
    lora_rank: int = 128
    lora_alpha: int = 128
    lora_target_modules: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    train_mask_weights: bool = True  # the zero-initialised mask input channels are trained with the LoRA

    # -- video geometry (what the cache was built with; checked against it) -----------------------------------
    height: int = CLIP.default_size[0]
    width: int = CLIP.default_size[1]
    fps: float = CLIP.fps
    num_frames: int = CLIP.clip_frames  # t1 = 4 s at 8 fps, 4k + 1 frames for the causal VAE
    condition_height: int = 256
    condition_width: int = 384
    condition_frames: int = CLIP.clip_frames  # t2 = 4 s of motion condition, as long as a clip

    # -- loss (paper eq. 2) -----------------------------------------------------------------------------------
    consistency_weight: float = 1.0  # alpha in L = L_d + alpha * L_c; 0 switches the teacher off
    # what the student sees in L_c. "masked" (the paper's Fig. 3 as written): L_c compares the prediction WITH the
    # mask and conditions, the one L_d trains, with the teacher's. "unmasked": a second student pass without mask
    # and conditions is compared with the teacher - L_c then holds exactly what Table 4 measures (text only) and
    # no longer pulls the masked prediction towards a teacher that cannot see the mask (one more forward/backward).
    consistency_inputs: str = "masked"
    condition_dropout: float = 0.1  # probability to drop both condition streams (trains the first clip)

    # -- optimisation -----------------------------------------------------------------------------------------
    learning_rate: float = 2e-4
    optimizer: str = "adam"  # adam | adamw
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-8
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lr_scheduler: str = "constant_with_warmup"
    lr_warmup_steps: int = 100
    max_train_steps: int = 10_000
    train_batch_size: int = 2  # per device; the paper's 64 = 2 x 32 GPUs
    gradient_accumulation_steps: int = 1
    seed: int = 42

    # -- performance ------------------------------------------------------------------------------------------
    mixed_precision: str = "bf16"  # no | fp16 | bf16 (fp16/bf16 need an accelerator)
    gradient_checkpointing: bool = True
    allow_tf32: bool = True

    # -- checkpoints and logs ---------------------------------------------------------------------------------
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = 3
    resume_from_checkpoint: str | None = None  # a checkpoint folder or "latest"
    report_to: str = "tensorboard"  # tensorboard | none | any accelerate tracker name
    logging_steps: int = 1
    export_name: str = "mvideo.safetensors"  # the file MVideoPipeline loads (--mvideo-weights)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError on values that would fail later, far from their cause."""
        positive_ints = (
            "lora_rank",
            "height",
            "width",
            "num_frames",
            "condition_height",
            "condition_width",
            "condition_frames",
            "max_train_steps",
            "train_batch_size",
            "gradient_accumulation_steps",
            "checkpointing_steps",
            "logging_steps",
        )
        for name in positive_ints:
            if getattr(self, name) <= 0:
                raise ConfigError(f"`{name}` must be a positive integer, got {getattr(self, name)}")
        multiple, t = CLIP.size_multiple, CLIP.vae_scale_temporal
        for name in ("height", "width", "condition_height", "condition_width"):
            if getattr(self, name) % multiple:
                raise ConfigError(
                    f"`{name}` has to be divisible by {multiple} (VAE x{CLIP.vae_scale_spatial}, patch "
                    f"x{multiple // CLIP.vae_scale_spatial}) but is {getattr(self, name)}"
                )
        if (self.num_frames - 1) % t:
            raise ConfigError(
                f"`num_frames` must be {t}k + 1 for the CogVideoX VAE (e.g. 33 or 49), got {self.num_frames}"
            )
        if (self.condition_frames - 1) % t:
            raise ConfigError(
                f"`condition_frames` must be {t}k + 1 for the CogVideoX VAE, got {self.condition_frames}"
            )
        if self.fps <= 0:
            raise ConfigError(f"`fps` must be positive, got {self.fps}")
        if self.learning_rate <= 0:
            raise ConfigError(f"`learning_rate` must be positive, got {self.learning_rate}")
        if self.consistency_weight < 0:
            raise ConfigError(f"`consistency_weight` (alpha) must be >= 0, got {self.consistency_weight}")
        if self.consistency_inputs not in ("masked", "unmasked"):
            raise ConfigError(f"`consistency_inputs` must be 'masked' or 'unmasked', got {self.consistency_inputs!r}")
        if not 0.0 <= self.condition_dropout <= 1.0:
            raise ConfigError(f"`condition_dropout` must lie in [0, 1], got {self.condition_dropout}")
        if self.optimizer not in ("adam", "adamw"):
            raise ConfigError(f"`optimizer` must be 'adam' or 'adamw', got {self.optimizer!r}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ConfigError(f"`mixed_precision` must be 'no', 'fp16' or 'bf16', got {self.mixed_precision!r}")
        if not self.lora_target_modules:
            raise ConfigError("`lora_target_modules` is empty; the paper uses ['to_q', 'to_k', 'to_v', 'to_out.0']")
        if self.checkpoints_total_limit is not None and self.checkpoints_total_limit < 1:
            raise ConfigError(f"`checkpoints_total_limit` must be >= 1 or null, got {self.checkpoints_total_limit}")

    # -- files ------------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys and wrong types raise ConfigError (with the closest key names)."""
        if not isinstance(values, dict):
            raise ConfigError(f"a training config must be a mapping of keys to values, got {type(values).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in values.items():
            if key not in fields:
                close = difflib.get_close_matches(str(key), fields, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(sorted(fields))}"
                raise ConfigError(f"unknown config key {key!r}{hint}")
            kwargs[key] = _coerce(key, value, hints[key])
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
        """Read a YAML or JSON file, then apply `key=value` overrides (values parsed as YAML)."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; see configs/train_example.yaml")
        try:
            text = path.read_text(encoding="utf-8")
            values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as err:
            raise ConfigError(f"config file {path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {err}") from err
        values = values or {}
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values, got {type(values).__name__}")
        for item in overrides or []:
            key, sep, raw = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"override {item!r} must look like key=value, e.g. max_train_steps=100")
            values[key.strip()] = yaml.safe_load(raw)
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check `value` against the field's type hint; ints are accepted for floats, nothing else is converted."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner[0])
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, args[0]) for v in value):
            raise ConfigError(f"`{key}` must be a list of {args[0].__name__}, got {value!r}")
        return list(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads "2e-4" as a string
        except ValueError:
            pass
    if key == "mixed_precision" and value is False:
        return "no"  # YAML 1.1 reads an unquoted `no` as false
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"`{key}` must be true or false, got {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"`{key}` must be an integer, got {value!r}")
    if not isinstance(value, hint):
        raise ConfigError(f"`{key}` must be of type {hint.__name__}, got {type(value).__name__} {value!r}")
    return value
