"""Where MVideo's weights come from: a base CogVideoX (hub id or local folder) plus one MVideo safetensors file.

The MVideo weights file holds everything MVideo adds to CogVideoX:
- the LoRA of the attention projections (`to_q, to_k, to_v, to_out.0`), peft key names under `transformer.`
  (as diffusers' `CogVideoXLoraLoaderMixin.save_lora_weights` writes them);
- the MVideo modules (`mvideo.mask_proj.*`: the new mask input channels of the patch embedding,
  `mvideo.condition_embed.*`: condition type embeddings and attention gates);
- metadata: format name and version, base model id, LoRA rank / alpha / target modules.
Safetensors only; nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mvideo_core.transformer import MVideoTransformer3DModel

logger = logging.getLogger(__name__)

WEIGHTS_FILENAME = "mvideo.safetensors"
FORMAT_NAME = "mvideo"
FORMAT_VERSION = "1"
LORA_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
ADAPTER_NAME = "mvideo"
BASE_FLAG = "--base-model"
WEIGHTS_FLAG = "--mvideo-weights"
DEFAULT_BASE_MODEL = "THUDM/CogVideoX-5b"


class WeightsError(ValueError):
    """Weights are missing or unusable; the message says which and the flag that points at them."""


# Files up to this size are hashed whole for a model's identity; larger ones by size, head and evenly spaced samples.
_FULL_HASH_BYTES = 64 * 2**20
_SAMPLES, _SAMPLE_BYTES = 16, 2**20


def _fingerprint_file(path: Path, digest: Any) -> None:
    size = path.stat().st_size
    digest.update(f"{size}\n".encode())
    with path.open("rb") as f:
        if size <= _FULL_HASH_BYTES:
            for block in iter(lambda: f.read(2**20), b""):
                digest.update(block)
            return
        for i in range(_SAMPLES):  # the safetensors header (shapes, dtypes, metadata) is in the first sample
            f.seek((size - _SAMPLE_BYTES) * i // (_SAMPLES - 1))
            digest.update(f.read(_SAMPLE_BYTES))


def model_identity(source: str | Path | None) -> str | None:
    """A stable name for a model: a hub id as it is; a local folder or file as `name@sha256:<16 hex>` of its
    content (every file's relative path and bytes; files over 64 MiB by size and 16 samples of 1 MiB), so the same
    weights keep their identity when moved or copied and a temporary folder does not make a new one each run."""
    if source is None:
        return None
    path = Path(source).expanduser()
    if not path.exists():
        return str(source)  # a hub id
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(f"{file.relative_to(path).as_posix() if path.is_dir() else file.name}\n".encode())
        _fingerprint_file(file, digest)
    return f"{path.name}@sha256:{digest.hexdigest()[:16]}"


def mvideo_lora_config(rank: int = 64, alpha: int | None = None, init_lora_weights: bool | str = True):
    """The peft `LoraConfig` MVideo trains: attention projections only (paper 4.1: frozen CogVideoX + LoRA)."""
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else rank,
        target_modules=list(LORA_TARGET_MODULES),
        init_lora_weights=init_lora_weights,
    )


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def resolve_base_model(base: str | Path | None) -> str:
    """A local CogVideoX folder (diffusers layout) or a hub id; anything else is a WeightsError naming the flag."""
    if base is None or str(base).strip() == "":
        raise WeightsError(
            f"no base model given: pass {BASE_FLAG} with a hub id (e.g. {DEFAULT_BASE_MODEL}) or a local CogVideoX "
            "folder in the diffusers layout"
        )
    path = Path(base).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file() or not (path / "transformer").is_dir():
            raise WeightsError(
                f"{path} is not a CogVideoX folder in the diffusers layout (model_index.json and transformer/ "
                f"expected); point {BASE_FLAG} at one, or at a hub id such as {DEFAULT_BASE_MODEL}"
            )
        return str(path)
    if path.exists() or not _looks_like_hub_id(str(base)):
        raise WeightsError(
            f"base model {str(base)!r} is neither a local folder nor a hub id (org/name); fix {BASE_FLAG}"
        )
    return str(base)


def resolve_mvideo_weights(weights: str | Path | None) -> Path:
    """A local `.safetensors` file, a folder holding `mvideo.safetensors`, or a hub id (downloads that file)."""
    if weights is None or str(weights).strip() == "":
        raise WeightsError(
            f"MVideo weights are missing: pass {WEIGHTS_FLAG} with a {WEIGHTS_FILENAME} file, a folder holding one, "
            "or a hub id; train them with the MVideo training command"
        )
    path = Path(weights).expanduser()
    if path.is_dir():
        path = path / WEIGHTS_FILENAME
        if not path.is_file():
            raise WeightsError(f"no {WEIGHTS_FILENAME} in {Path(weights)}; point {WEIGHTS_FLAG} at the file itself")
        return path
    if path.is_file():
        if path.suffix != ".safetensors":
            raise WeightsError(f"MVideo weights must be a .safetensors file (nothing is unpickled), got {path.name}")
        return path
    if not _looks_like_hub_id(str(weights)):
        raise WeightsError(
            f"MVideo weights {str(weights)!r} not found (no such file, folder or hub id); fix {WEIGHTS_FLAG}"
        )
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(str(weights), WEIGHTS_FILENAME))
    except Exception as err:  # network, missing repo or file: one message naming the flag
        raise WeightsError(
            f"could not fetch {WEIGHTS_FILENAME} from hub repo {weights!r} ({err}); fix {WEIGHTS_FLAG}"
        ) from err


def _unwrap(model: Any) -> tuple[MVideoTransformer3DModel, Any]:
    """(the MVideo transformer, the object holding the peft config) for a bare model or a peft PeftModel."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not isinstance(inner, MVideoTransformer3DModel):
        raise TypeError(f"expected an MVideoTransformer3DModel (or a PeftModel of one), got {type(inner).__name__}")
    return inner, model


def save_mvideo_weights(
    model: Any,
    path: str | Path,
    *,
    base_model: str,
    adapter_name: str | None = None,
    extra_metadata: dict[str, str] | None = None,
) -> Path:
    """Write the LoRA + MVideo modules + metadata of `model` to one safetensors file; returns its path.

    `model` is an `MVideoTransformer3DModel` (LoRA added with `add_adapter`, or none) or a peft `PeftModel` of one.
    """
    from peft import get_peft_model_state_dict

    transformer, holder = _unwrap(model)
    tensors: dict[str, torch.Tensor] = {}
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "base_model": str(base_model), "lora_rank": "0"}
    peft_config = getattr(holder, "peft_config", None) or {}
    if peft_config:
        if adapter_name is None:
            if len(peft_config) != 1:
                raise ValueError(f"the model has several adapters {sorted(peft_config)}; name one with adapter_name=")
            adapter_name = next(iter(peft_config))
        config = peft_config[adapter_name]
        lora = get_peft_model_state_dict(holder, adapter_name=adapter_name)
        for key, value in lora.items():
            key = key.removeprefix("base_model.model.")
            tensors[f"transformer.{key}"] = value.detach().contiguous().cpu()
        meta.update(
            lora_rank=str(config.r),
            lora_alpha=str(config.lora_alpha),
            lora_target_modules=json.dumps(sorted(config.target_modules)),
        )
    for key, value in transformer.mvideo_state_dict().items():
        tensors[f"mvideo.{key}"] = value.detach().contiguous().cpu()
    meta["mvideo_config"] = json.dumps(
        {"in_channels": transformer.config.in_channels, "mask_in_channels": transformer.mask_proj.in_channels}
    )
    meta.update({k: str(v) for k, v in (extra_metadata or {}).items()})
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / WEIGHTS_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".safetensors.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def read_mvideo_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of an MVideo weights file (format, version, base model, LoRA rank, ...)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:
        raise WeightsError(f"{path} is not a readable safetensors file ({err}); fix {WEIGHTS_FLAG}") from err
    if meta.get("format") != FORMAT_NAME:
        raise WeightsError(f"{path} is not an MVideo weights file (metadata format={meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise WeightsError(
            f"{path} has MVideo format version {meta.get('format_version')!r}; this code reads version {FORMAT_VERSION}"
        )
    return meta


def load_mvideo_weights(transformer: MVideoTransformer3DModel, weights: str | Path) -> dict[str, str]:
    """Load an MVideo weights file (path, folder or hub id) into `transformer`; returns its metadata."""
    from peft import set_peft_model_state_dict

    path = resolve_mvideo_weights(weights)
    meta = read_mvideo_metadata(path)
    lora, mvideo = {}, {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            if key.startswith("transformer."):
                lora[key.removeprefix("transformer.")] = f.get_tensor(key)
            elif key.startswith("mvideo."):
                mvideo[key.removeprefix("mvideo.")] = f.get_tensor(key)
            else:
                raise WeightsError(f"{path} holds an unexpected tensor {key!r}; it is not an MVideo weights file")
    try:
        transformer.load_mvideo_state_dict(mvideo)
    except ValueError as err:
        raise WeightsError(f"{path} does not fit this base model: {err}; check {BASE_FLAG} / {WEIGHTS_FLAG}") from err
    rank = int(meta.get("lora_rank", "0"))
    if lora:
        if ADAPTER_NAME in (getattr(transformer, "peft_config", None) or {}):
            transformer.delete_adapters(ADAPTER_NAME)
        targets = json.loads(meta.get("lora_target_modules", json.dumps(list(LORA_TARGET_MODULES))))
        config = mvideo_lora_config(rank, int(meta.get("lora_alpha", rank)))
        config.target_modules = set(targets)
        transformer.add_adapter(config, adapter_name=ADAPTER_NAME)
        result = set_peft_model_state_dict(transformer, lora, adapter_name=ADAPTER_NAME)
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        missing = [k for k in (getattr(result, "missing_keys", []) or []) if "lora_" in k and ADAPTER_NAME in k]
        if unexpected or missing:
            raise WeightsError(
                f"LoRA in {path} does not fit this model: unexpected {unexpected[:5]}, missing {missing[:5]}"
            )
        for p in transformer.parameters():
            p.requires_grad_(False)
    logger.info("loaded MVideo weights %s (base %s, LoRA rank %s)", path, meta.get("base_model"), rank)
    return meta


def load_mvideo_pipeline(
    base_model: str | Path | None,
    mvideo_weights: str | Path | None = None,
    *,
    require_mvideo_weights: bool = True,
    torch_dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
):
    """Base CogVideoX (hub id or folder) + MVideo weights -> a ready `MVideoPipeline`.

    Without `mvideo_weights` (and `require_mvideo_weights=False`) the pipeline is base CogVideoX: masks and
    conditions are ignored by the untrained zero modules; a warning says so.
    """
    from diffusers import CogVideoXTransformer3DModel

    from mvideo_core.pipeline_mvideo import MVideoPipeline

    if mvideo_weights is None and require_mvideo_weights:
        resolve_mvideo_weights(None)  # raises the message naming the flag
    weights_path = resolve_mvideo_weights(mvideo_weights) if mvideo_weights is not None else None  # fail fast
    base = resolve_base_model(base_model)
    try:
        base_transformer = CogVideoXTransformer3DModel.from_pretrained(
            base, subfolder="transformer", dtype=torch_dtype, use_safetensors=True
        )
        transformer = MVideoTransformer3DModel.from_cogvideox(base_transformer)
        pipe = MVideoPipeline.from_pretrained(base, transformer=transformer, dtype=torch_dtype, use_safetensors=True)
    except (OSError, ValueError, TypeError) as err:
        raise WeightsError(
            f"could not load the base model from {base!r}: {err}; point {BASE_FLAG} at a CogVideoX hub id "
            f"(e.g. {DEFAULT_BASE_MODEL}) or a local folder with safetensors weights"
        ) from err
    # base_model / mvideo_weights: stable identities (what generation.json compares on resume); *_source: where
    # they were loaded from this time; trained_on: the base model the weights file names.
    pipe.mvideo_metadata = {
        "base_model": model_identity(base),
        "base_model_source": str(base_model),
        "mvideo_weights": None,
    }
    if mvideo_weights is not None:
        meta = load_mvideo_weights(pipe.transformer, weights_path)
        pipe.mvideo_metadata = {
            **{k: v for k, v in meta.items() if k != "base_model"},
            "trained_on": meta.get("base_model"),
            **pipe.mvideo_metadata,
            "mvideo_weights": model_identity(weights_path),
            "mvideo_weights_source": str(mvideo_weights),
        }
        if meta.get("base_model") and Path(meta["base_model"]).name != Path(str(base_model)).name:
            warnings.warn(
                f"MVideo weights were trained on {meta['base_model']!r} but the base model is {str(base_model)!r}",
                stacklevel=2,
            )
    else:
        warnings.warn(
            f"no MVideo weights ({WEIGHTS_FLAG}): generating with base CogVideoX, masks and conditions have no effect",
            stacklevel=2,
        )
    if device is not None:
        pipe.to(device)
    return pipe
