"""The shipped toy MVideo (assets/toy) loads through the normal pipeline code and follows a held-out mask sequence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mvideo_core.masks import MaskSet
from research.toy import load_toy_pipeline
from research.toy.config import ToyConfig
from research.toy.evaluation import generate
from research.toy.world import caption_for, make_clip

# Held-out clip 3 (a cross on a circle path: shape and motion never trained on), seed 1003 as in the evaluation,
# prompt worded like the mask-to-video captions (no motion words). Measured with the shipped weights on the dev
# machine (toy v6 weights, classic tracker with v7's box retry): mIoU 0.831 against its own masks, 0.142 against the
# same masks mirrored (docs/toy-model.md: the held-out mean over 48 clips is lower, 0.63; rings average 0.50, and
# held-out clip 1, a ring, scores 0.533). The floor leaves a margin.
TOY_DIR = Path(__file__).resolve().parents[1] / "assets" / "toy"  # the shipped toy of this checkout
CLIP_INDEX = 3
MEASURED_MIOU = 0.831
MIOU_FLOOR = 0.65


@pytest.fixture(scope="module")
def toy_pipe():
    if not (TOY_DIR / "mvideo.safetensors").is_file():
        pytest.fail("assets/toy is missing: train and ship with `python -m research.toy run` and `... ship`")
    torch.set_num_threads(1)
    return load_toy_pipeline(TOY_DIR)


def test_shipped_toy_model_follows_a_held_out_mask_sequence(toy_pipe):
    from mvideo_core.extraction import load_tracker
    from mvideo_core.metrics import score_clip

    config = ToyConfig.load(TOY_DIR / "toy_config.json")
    clip = make_clip("heldout", CLIP_INDEX)
    prompt = caption_for(clip.scene, motion=False)
    frames = generate(toy_pipe, prompt, clip.masks.union(), config, seed=1000 + CLIP_INDEX)
    assert frames.shape == (33, 64, 96, 3) and frames.dtype == np.uint8
    tracker = load_tracker("classic")
    score = score_clip(frames, clip.masks, tracker, fps=8.0)
    assert score.frames_scored == 33
    assert score.miou >= MIOU_FLOOR, f"mIoU {score.miou:.3f} below the floor {MIOU_FLOOR} (measured {MEASURED_MIOU})"
    # the subject is where the masks put it: the same video scores far lower against the mirrored masks
    mirrored = MaskSet(np.ascontiguousarray(clip.masks.masks[..., ::-1]), 8.0)
    assert score.miou > score_clip(frames, mirrored, tracker, fps=8.0).miou + 0.1


def test_shipped_toy_model_is_small_and_labelled(toy_pipe):
    total = sum(p.stat().st_size for p in TOY_DIR.rglob("*") if p.is_file())
    assert total < 12 * 2**20
    assert "Toy" in toy_pipe.mvideo_metadata["label"]
    assert toy_pipe.mvideo_metadata.get("lora_rank") not in (None, "0")
