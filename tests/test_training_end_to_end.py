"""The whole training story on tiny models, offline: videos -> dataset -> latent cache -> LoRA training ->
MVideoPipeline with the exported weights -> a generated clip -> mask mIoU of that clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvideo_core.training.captions import CaptionSource
from mvideo_core.training.config import TrainConfig
from mvideo_core.training.dataset_builder import BuildOptions, DatasetBuilder, list_videos
from mvideo_core.training.manifest import read_manifest

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def test_videos_to_weights_to_generated_clip_to_score(tmp_path):
    from mvideo_core.evaluate import evaluate_pairs
    from mvideo_core.extraction.base import Detections
    from mvideo_core.extraction.classic import ClassicTracker
    from mvideo_core.masks import load_masks, save_masks
    from mvideo_core.metrics import mask_box
    from mvideo_core.samples import make_sample
    from mvideo_core.tiny import save_tiny_base_model
    from mvideo_core.training.precompute import precompute_cache
    from mvideo_core.training.trainer import MVideoTrainer
    from mvideo_core.video_io import write_video
    from mvideo_core.weights import load_mvideo_pipeline

    # 1. Videos with captions, and a grounder that finds the sample's subject on the first frame
    video, truth = make_sample("zoom", size=(64, 96), num_frames=12, fps=8.0)
    write_video(tmp_path / "videos" / "zoom.mp4", video.frames, 8.0, crf=12)
    (tmp_path / "videos" / "zoom.txt").write_text("a person walking in a park")

    class Grounder:
        def detect(self, frame, phrases):
            return Detections([mask_box(truth.masks[0, 0])], [0.9], ["person"])

    options = BuildOptions(min_seconds=1.0, max_seconds=None, height=64, width=96, classes=["person"])
    builder = DatasetBuilder(Grounder(), ClassicTracker(), CaptionSource(), options)
    report = builder.build(list_videos(tmp_path / "videos"), tmp_path / "dataset", show_progress=False)
    assert report.clips == 1

    # 2. Latent cache, 3. training, exported weights
    base = str(save_tiny_base_model(tmp_path / "base", "5b"))
    geometry = dict(height=64, width=96, num_frames=9, condition_height=32, condition_width=48, condition_frames=9)
    cfg = TrainConfig(
        base_model=base,
        cache_dir=str(tmp_path / "cache"),
        output_dir=str(tmp_path / "run"),
        **geometry,
        lora_rank=4,
        lora_alpha=4,
        max_train_steps=3,
        train_batch_size=1,
        learning_rate=1e-2,
        lr_warmup_steps=0,
        mixed_precision="no",
        report_to="none",
    )
    precompute_cache(cfg, tmp_path / "dataset", show_progress=False)
    weights = MVideoTrainer(cfg).train().weights_path

    # 4. Generate a clip from the dataset's masks with the trained weights
    pipe = load_mvideo_pipeline(base, weights)
    pipe.set_progress_bar_config(disable=True)
    [clip] = read_manifest(tmp_path / "dataset")
    masks = load_masks(tmp_path / "dataset" / clip.masks)
    masks.masks = masks.masks[:, -9:]  # the clip's last 9 frames, as trained
    out = pipe(
        prompt=clip.caption,
        masks=masks,
        num_frames=9,
        height=64,
        width=96,
        num_inference_steps=2,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(0),
    ).frames
    frames = (np.asarray(out[0]) * 255).round().astype(np.uint8)  # [T, H, W, 3]
    assert frames.shape == (9, 64, 96, 3)

    # 5. Score it: a tiny random model draws noise, so only the machinery is checked, not the value
    write_video(tmp_path / "gen" / "clip.mp4", frames, 8.0)
    save_masks(masks, tmp_path / "gen" / "clip.npz")
    result = evaluate_pairs([(tmp_path / "gen" / "clip.mp4", tmp_path / "gen" / "clip.npz")], ClassicTracker())
    assert result.failed == {} and result.frames_scored == 9 and 0.0 <= result.miou <= 1.0
