"""Latent cache: VAE latents of clip, masks and both conditions, T5 text, in safetensors shards; resume; a trainer
step on what it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mvideo_core.training.config import TrainConfig
from mvideo_core.training.dataset import LatentCacheDataset, collate_samples
from mvideo_core.training.manifest import ClipRecord, ShardWriter
from mvideo_core.training.precompute import (
    CacheError,
    CacheGeometry,
    masks_to_tensor,
    plan_sample,
    precompute_cache,
    read_cache_index,
)

GEOMETRY = dict(height=64, width=96, num_frames=9, condition_height=32, condition_width=48, condition_frames=9)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    """A manifest of three clips of the 'zoom' sample: 12 frames (continuation), 9 frames (first clip), and one whose
    source file is missing."""
    from mvideo_core.masks import save_masks
    from mvideo_core.samples import make_sample
    from mvideo_core.video_io import write_video

    folder = tmp_path_factory.mktemp("dataset")
    video, masks = make_sample("zoom", size=(64, 96), num_frames=12, fps=8.0)
    write_video(folder / "zoom.mp4", video.frames, 8.0)
    writer = ShardWriter(folder)
    for clip_id, frames, source in (("a-long", 12, "zoom.mp4"), ("b-short", 9, "zoom.mp4"), ("c-gone", 9, "gone.mp4")):
        sub = masks.copy()
        sub.masks = sub.masks[:, :frames]
        save_masks(sub, folder / "masks" / f"{clip_id}.json")
        writer.add_clip(
            ClipRecord(
                clip_id,
                str(folder / source),
                0.0,
                frames / 8.0,
                8.0,
                frames,
                64,
                96,
                "crop",
                "a person running",
                f"masks/{clip_id}.json",
            )
        )
    return folder


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> str:
    from mvideo_core.tiny import save_tiny_base_model

    return str(save_tiny_base_model(tmp_path_factory.mktemp("base"), "5b"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory, dataset_dir, base_model):
    cfg = TrainConfig(base_model=base_model, cache_dir=str(tmp_path_factory.mktemp("cache")), **GEOMETRY)
    precompute_cache(cfg, dataset_dir, show_progress=False, shard_size=1)
    return cfg


def test_plan_sample_takes_the_last_window_and_the_frames_before_it():
    geometry = CacheGeometry(fps=8.0, **GEOMETRY)
    assert plan_sample(9, geometry) == (0, None, None)
    start, appearance, motion = plan_sample(12, geometry)
    assert (start, appearance) == (3, 3)
    assert motion == [0] * 5 + [0, 1, 2, 3]  # the 9 frames ending at frame 3, frame 0 repeated before the clip
    with pytest.raises(CacheError, match="fewer than the 9"):
        plan_sample(8, geometry)


def test_samples_are_cut_as_long_video_generates():
    """At paper geometry the conditions of a training sample are exactly those `long_video` feeds clip k > 0."""
    from mvideo_core.long_video import clip_frame_ranges, condition_window

    geometry = CacheGeometry.from_config(TrainConfig())
    for num_clips in (2, 3):
        total = clip_frame_ranges(num_clips)[-1][1]  # a clip of exactly that many frames
        start, appearance, motion = plan_sample(total, geometry)
        assert (start, start + geometry.num_frames) == clip_frame_ranges(num_clips)[-1]
        want_appearance, (lo, hi) = condition_window(start)
        assert appearance == want_appearance
        assert motion == list(range(lo, hi))


def test_mask_video_is_three_channels_in_minus_one_one():
    masks = np.zeros((2, 4, 4), bool)
    masks[:, 1:3, 1:3] = True
    x = masks_to_tensor(masks)
    assert x.shape == (1, 3, 2, 4, 4)
    assert set(x.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(x[0, 0] > 0, torch.from_numpy(masks))


def test_cache_holds_every_stream_with_the_right_shapes(cache):
    data = LatentCacheDataset(cache.cache_dir, CacheGeometry.from_config(cache), cache.base_model)
    assert [s["clip_id"] for s in data.samples] == ["a-long", "b-short"]
    long, short = data[0], data[1]
    assert long["latents"].shape == (3, 4, 8, 12)  # 9 frames -> 3 latent frames, 64x96 -> 8x12
    assert long["mask_latents"].shape == (3, 4, 8, 12)
    assert long["prompt_embeds"].shape == (16, 16)
    assert long["appearance"].shape == (1, 4, 8, 12)
    assert long["motion"].shape == (3, 4, 4, 6)  # 9 frames at 32x48
    assert "motion" not in short and "appearance" not in short  # a first clip has no conditions
    assert not torch.equal(long["latents"], long["mask_latents"])
    batch = collate_samples([long, short])
    assert batch["latents"].shape == (2, 3, 4, 8, 12) and "motion" not in batch


def test_a_missing_source_is_skipped_with_its_reason(cache):
    skipped = json.loads((Path(cache.cache_dir) / "skipped-00000.json").read_text())
    assert list(skipped) == ["c-gone"]
    assert "gone.mp4" in skipped["c-gone"]


def test_rerun_skips_cached_clips(cache, dataset_dir):
    files = sorted(Path(cache.cache_dir).glob("latents-*.safetensors"))
    stamps = [f.stat().st_mtime_ns for f in files]
    precompute_cache(cache, dataset_dir, show_progress=False, shard_size=1)
    assert sorted(Path(cache.cache_dir).glob("latents-*.safetensors")) == files
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert len(read_cache_index(cache.cache_dir)[1]) == 2


def test_cache_of_another_base_model_is_refused(cache):
    with pytest.raises(CacheError, match="latents of another VAE/T5"):
        LatentCacheDataset(cache.cache_dir, CacheGeometry.from_config(cache), "THUDM/CogVideoX-2b")


def test_empty_cache_dir_says_to_run_precompute(tmp_path):
    with pytest.raises(CacheError, match="python -m mvideo_core.training.precompute"):
        LatentCacheDataset(tmp_path)


def test_trainer_runs_on_the_precomputed_cache(cache, tmp_path):
    from accelerate.state import AcceleratorState, GradientState

    from mvideo_core.training.trainer import MVideoTrainer

    AcceleratorState._reset_state(reset_partial_state=True)  # accelerate's state is process-wide
    GradientState._reset_state()

    overrides = dict(output_dir=str(tmp_path / "run"), lora_rank=4, lora_alpha=4, max_train_steps=2)
    overrides.update(train_batch_size=1, mixed_precision="no", report_to="none", lr_warmup_steps=0)
    cfg = TrainConfig(**{**cache.to_dict(), **overrides})
    result = MVideoTrainer(cfg).train()
    assert len(result.history) == 2 and all(np.isfinite(h["loss"]) for h in result.history)
    assert result.weights_path.is_file()


def test_precompute_cli_refuses_a_config_without_cache_dir(tmp_path, dataset_dir, base_model):
    from mvideo_core.training import precompute

    (tmp_path / "c.yaml").write_text(f"base_model: {base_model}\n")
    with pytest.raises(CacheError, match="`cache_dir` is not set"):
        precompute.main(["--config", str(tmp_path / "c.yaml"), "--manifest", str(dataset_dir)])


def test_precompute_cli_writes_a_cache(tmp_path, dataset_dir, base_model):
    import yaml

    from mvideo_core.training import precompute

    cfg = {"base_model": base_model, "cache_dir": str(tmp_path / "cache"), **GEOMETRY}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert precompute.main(["--config", str(tmp_path / "c.yaml"), "--manifest", str(dataset_dir)]) == 0
    assert [s["clip_id"] for s in read_cache_index(tmp_path / "cache")[1]] == ["a-long", "b-short"]
