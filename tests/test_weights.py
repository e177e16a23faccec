"""MVideo weights: one safetensors file (LoRA + MVideo modules + metadata), round trips, loading, clear errors."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mvideo_core.tiny import TINY_LATENT_CHANNELS, save_tiny_base_model, tiny_transformer
from mvideo_core.transformer import ConditionLatents, MVideoTransformer3DModel
from mvideo_core.weights import (
    FORMAT_VERSION,
    WEIGHTS_FILENAME,
    WeightsError,
    load_mvideo_pipeline,
    load_mvideo_weights,
    model_identity,
    mvideo_lora_config,
    read_mvideo_metadata,
    resolve_base_model,
    resolve_mvideo_weights,
    save_mvideo_weights,
)

C = TINY_LATENT_CHANNELS


def _trained(style="5b", seed=0):
    """A model as training leaves it: random LoRA, mask projection and open condition gates."""
    model = MVideoTransformer3DModel.from_cogvideox(tiny_transformer(style, seed=seed))
    torch.manual_seed(seed + 1)
    model.add_adapter(mvideo_lora_config(rank=4, init_lora_weights=False))
    with torch.no_grad():
        model.mask_proj.weight.normal_(0, 0.1)
        model.condition_embed.gates.normal_()
        model.condition_embed.type_embedding.normal_()
    return model


def _predict(model):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, C, 8, 12, generator=g)
    text = torch.randn(1, 16, 16, generator=g)
    mask = torch.randn(1, 3, C, 8, 12, generator=g)
    cond = ConditionLatents(torch.randn(1, 1, C, 8, 12, generator=g), torch.randn(1, 3, C, 4, 6, generator=g))
    with torch.no_grad():
        return model(x, text, torch.tensor([700]), mask_latents=mask, condition_latents=cond).sample


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return save_tiny_base_model(tmp_path_factory.mktemp("base") / "cogvideox-tiny", "5b", seed=0)


def test_round_trip_restores_lora_and_mvideo_modules(tmp_path):
    model = _trained()
    path = save_mvideo_weights(model, tmp_path / "w.safetensors", base_model="THUDM/CogVideoX-5b")
    fresh = MVideoTransformer3DModel.from_cogvideox(tiny_transformer("5b", seed=0))
    assert not torch.equal(_predict(fresh), _predict(model))
    meta = load_mvideo_weights(fresh, path)
    assert torch.equal(_predict(fresh), _predict(model))
    assert meta["base_model"] == "THUDM/CogVideoX-5b" and meta["lora_rank"] == "4"
    assert meta["format"] == "mvideo" and meta["format_version"] == FORMAT_VERSION
    assert json.loads(meta["lora_target_modules"]) == ["to_k", "to_out.0", "to_q", "to_v"]


def test_file_uses_diffusers_peft_key_names(tmp_path):
    path = save_mvideo_weights(_trained(), tmp_path, base_model="b")
    assert path.name == WEIGHTS_FILENAME
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
    assert "transformer.transformer_blocks.0.attn1.to_q.lora_A.weight" in keys
    assert "transformer.transformer_blocks.1.attn1.to_out.0.lora_B.weight" in keys
    assert {"mvideo.mask_proj.weight", "mvideo.condition_embed.gates", "mvideo.condition_embed.type_embedding"} <= keys
    assert all(k.startswith(("transformer.", "mvideo.")) for k in keys)


def test_peft_wrapped_model_saves_the_same_file(tmp_path):
    from peft import get_peft_model

    torch.manual_seed(0)
    model = MVideoTransformer3DModel.from_cogvideox(tiny_transformer("2b"))
    peft_model = get_peft_model(model, mvideo_lora_config(rank=2, init_lora_weights=False))
    path = save_mvideo_weights(peft_model, tmp_path / "p.safetensors", base_model="b")
    fresh = MVideoTransformer3DModel.from_cogvideox(tiny_transformer("2b"))
    load_mvideo_weights(fresh, path)
    assert torch.equal(_predict(fresh), _predict(model))


def test_weights_without_lora_load_too(tmp_path):
    model = MVideoTransformer3DModel.from_cogvideox(tiny_transformer("2b"))
    with torch.no_grad():
        model.mask_proj.weight.fill_(0.01)
    path = save_mvideo_weights(model, tmp_path / "nolora.safetensors", base_model="b")
    fresh = MVideoTransformer3DModel.from_cogvideox(tiny_transformer("2b"))
    assert load_mvideo_weights(fresh, path)["lora_rank"] == "0"
    assert torch.equal(fresh.mask_proj.weight, model.mask_proj.weight)


def test_load_through_the_pipeline_from_local_folders(tmp_path, base_dir):
    model = _trained("5b", seed=0)  # same base weights as the saved tiny base (seed 0)
    weights = save_mvideo_weights(model, tmp_path / "mvideo", base_model=str(base_dir))
    pipe = load_mvideo_pipeline(base_dir, tmp_path / "mvideo")
    pipe.set_progress_bar_config(disable=True)
    assert torch.equal(_predict(pipe.transformer), _predict(model))
    meta = pipe.mvideo_metadata
    assert meta["mvideo_weights_source"] == str(tmp_path / "mvideo") and meta["base_model_source"] == str(base_dir)
    assert meta["mvideo_weights"] == model_identity(weights) and meta["mvideo_weights"].startswith(
        "mvideo.safetensors@"
    )
    assert meta["base_model"] == model_identity(base_dir) and meta["trained_on"] == str(base_dir)
    masks = np.zeros((9, 64, 96), dtype=bool)
    masks[:, 20:40, 30:60] = True
    frames = pipe("a dog", masks=masks, num_inference_steps=1, generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == (1, 9, 64, 96, 3)
    assert weights.is_file()


def test_missing_weights_name_what_and_the_flag(tmp_path, base_dir):
    with pytest.raises(WeightsError, match="--mvideo-weights"):
        load_mvideo_pipeline(base_dir, None)
    with pytest.raises(WeightsError, match="--base-model"):
        load_mvideo_pipeline(None, None, require_mvideo_weights=False)
    with pytest.raises(WeightsError, match="--mvideo-weights"):
        resolve_mvideo_weights(tmp_path / "nowhere" / "w.safetensors")
    with pytest.raises(WeightsError, match=f"no {WEIGHTS_FILENAME}"):
        resolve_mvideo_weights(tmp_path)
    with pytest.raises(WeightsError, match="--base-model"):
        resolve_base_model(str(tmp_path / "no" / "such" / "folder"))
    with pytest.raises(WeightsError, match="diffusers layout"):
        resolve_base_model(tmp_path)
    assert resolve_base_model("THUDM/CogVideoX-5b") == "THUDM/CogVideoX-5b"  # a hub id passes through


def test_unsafe_corrupt_and_foreign_files_are_refused(tmp_path):
    pickle = tmp_path / "w.pt"
    pickle.write_bytes(b"not allowed")
    with pytest.raises(WeightsError, match="safetensors"):
        resolve_mvideo_weights(pickle)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 20)
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        read_mvideo_metadata(corrupt)
    foreign = tmp_path / "lora.safetensors"
    save_file({"a": torch.zeros(1)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(WeightsError, match="not an MVideo weights file"):
        load_mvideo_weights(MVideoTransformer3DModel.from_cogvideox(tiny_transformer("2b")), foreign)
    future = tmp_path / "future.safetensors"
    save_file({"mvideo.x": torch.zeros(1)}, str(future), metadata={"format": "mvideo", "format_version": "99"})
    with pytest.raises(WeightsError, match="format version"):
        read_mvideo_metadata(future)


def test_weights_for_another_model_size_are_refused(tmp_path):
    big = MVideoTransformer3DModel.from_cogvideox(
        tiny_transformer("2b").__class__(**{**tiny_transformer("2b").config, "num_attention_heads": 2})
    )
    path = save_mvideo_weights(big, tmp_path / "big.safetensors", base_model="b")
    with pytest.raises(WeightsError, match="does not fit this base model"):
        load_mvideo_weights(MVideoTransformer3DModel.from_cogvideox(tiny_transformer("2b")), path)


def test_model_identity_follows_content_not_location(tmp_path, monkeypatch):
    import shutil

    import mvideo_core.weights as weights_module

    a = tmp_path / "a" / "model"
    (a / "transformer").mkdir(parents=True)
    (a / "transformer" / "w.safetensors").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    (a / "model_index.json").write_text("{}")
    b = tmp_path / "b" / "model"
    shutil.copytree(a, b)
    assert model_identity(a) == model_identity(b) and model_identity(a).startswith("model@sha256:")
    assert model_identity("THUDM/CogVideoX-5b") == "THUDM/CogVideoX-5b" and model_identity(None) is None
    monkeypatch.setattr(weights_module, "_FULL_HASH_BYTES", 1024)  # large files: size + 16 samples
    monkeypatch.setattr(weights_module, "_SAMPLE_BYTES", 256)
    sampled = model_identity(b)
    data = bytearray((b / "transformer" / "w.safetensors").read_bytes())
    data[-1] ^= 1  # the last sample covers the end of the file
    (b / "transformer" / "w.safetensors").write_bytes(bytes(data))
    assert model_identity(b) != sampled
    before = model_identity(a)
    (a / "extra.txt").write_text("x")  # another file in the folder: another model
    assert model_identity(a) != before
