"""Mask mIoU S_m (paper eq. 3): values on known masks, aggregation, the real classic tracker, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra.numpy import arrays

from mvideo_core.masks import MaskSet
from mvideo_core.metrics import MetricError, aggregate, mask_box, mask_iou, score_clip


def _moving_square_video(num_frames: int = 6, size: tuple[int, int] = (64, 96), shift: int = 0):
    """A red square moving right over a grey textured background, and its exact masks bool [T, H, W]."""
    h, w = size
    rng = np.random.default_rng(0)
    background = (110 + rng.integers(-12, 12, size=(h, w, 3))).astype(np.uint8)
    frames = np.repeat(background[None], num_frames, axis=0)
    masks = np.zeros((num_frames, h, w), bool)
    for t in range(num_frames):
        x0 = 10 + 8 * t + shift
        frames[t, 20:44, x0 : x0 + 24] = (220, 30, 30)
        masks[t, 20:44, x0 - shift : x0 - shift + 24] = True
    return frames, masks


class BoxTracker:
    """Test double with the Tracker session API: the 'segmentation' of a box is the filled box itself."""

    def start(self, frames, fps=8.0):
        return {"shape": frames.shape[1:3], "calls": []}

    def add_prompt(self, session, obj_id, frame_idx, box=None, points=None, labels=None, name=None):
        session["calls"].append((obj_id, frame_idx))
        mask = np.zeros(session["shape"], bool)
        x0, y0, x1, y1 = (int(v) for v in box)
        mask[y0:y1, x0:x1] = True
        return mask


def test_mask_iou_known_values():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:, :2] = True  # 8 pixels
    b[:, 1:3] = True  # 8 pixels, 4 shared
    assert mask_iou(a, b) == pytest.approx(4 / 12)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(a, ~a) == 0.0
    assert mask_iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0


def test_mask_iou_rejects_mismatched_shapes():
    with pytest.raises(MetricError, match="share a shape"):
        mask_iou(np.zeros((4, 4), bool), np.zeros((4, 5), bool))


def test_mask_iou_rejects_float_masks():
    with pytest.raises(ValueError, match="threshold"):
        mask_iou(np.zeros((4, 4), np.float32), np.zeros((4, 4), bool))


@settings(max_examples=40, deadline=None)
@given(arrays(bool, (5, 6)), arrays(bool, (5, 6)))
def test_mask_iou_is_symmetric_and_bounded(a, b):
    value = mask_iou(a, b)
    assert value == mask_iou(b, a)
    assert 0.0 <= value <= 1.0
    if a.any() or b.any():
        assert (value == 1.0) == bool(np.array_equal(a, b))


def test_mask_box_is_tight_and_exclusive():
    m = np.zeros((10, 10), bool)
    m[2:5, 3:9] = True
    assert mask_box(m).tolist() == [3, 2, 9, 5]
    assert mask_box(np.zeros((4, 4), bool)) is None


def test_score_clip_with_box_masks_is_one_and_prompts_every_present_frame():
    frames, masks = _moving_square_video()
    masks[2] = False  # the object is absent on frame 2: no box, not scored
    tracker = BoxTracker()
    score = score_clip(frames, masks, tracker, fps=8.0)
    assert score.miou == pytest.approx(1.0)
    assert score.frames_scored == 5
    assert np.isnan(score.frame_ious[2])


def test_score_clip_known_partial_overlap():
    """A ground-truth L-shape inside its box: the box 'segmentation' scores |L| / |box| on every frame."""
    t, h, w = 3, 16, 16
    masks = np.zeros((t, h, w), bool)
    masks[:, 4:12, 4:8] = True  # 32 px
    masks[:, 8:12, 8:12] = True  # + 16 px, box is 8x8 = 64 px
    frames = np.zeros((t, h, w, 3), np.uint8)
    score = score_clip(frames, masks, BoxTracker(), fps=8.0)
    assert score.miou == pytest.approx(48 / 64)
    assert score.frame_ious == pytest.approx([48 / 64] * t)


def test_aggregate_is_mean_over_all_frames_of_all_clips():
    frames, masks = _moving_square_video(num_frames=4)
    perfect = score_clip(frames, masks, BoxTracker(), name="a")
    half = masks.copy()
    half[:, :, :] = False
    half[:2] = masks[:2]  # only 2 frames scored
    one = score_clip(frames, half, BoxTracker(), name="b")
    result = aggregate([perfect, one])
    assert result.frames_scored == 6
    assert result.miou == pytest.approx(1.0)
    assert result.to_dict()["S_m"] == 100.0


def test_score_clip_resamples_and_resizes_masks_to_the_video():
    frames, masks = _moving_square_video(num_frames=4, size=(32, 48))
    big = np.repeat(np.repeat(masks, 2, axis=1), 2, axis=2)  # 64x96
    doubled = np.repeat(big, 2, axis=0)  # 8 frames at 16 fps
    score = score_clip(frames, MaskSet(doubled[None], 16.0), BoxTracker(), fps=8.0)
    assert score.frames_scored == 4
    assert score.miou == pytest.approx(1.0)


def test_score_clip_rejects_masks_of_another_duration():
    frames, masks = _moving_square_video(num_frames=6)
    with pytest.raises(MetricError, match="covers 3 frames|cover 3 frames"):
        score_clip(frames, masks[:3], BoxTracker(), fps=8.0)


def test_score_clip_rejects_bad_frames():
    _, masks = _moving_square_video()
    with pytest.raises(MetricError, match=r"uint8 \[T, H, W, 3\]"):
        score_clip(np.zeros((6, 64, 96), np.uint8), masks, BoxTracker())


def test_classic_tracker_scores_an_aligned_video_above_a_misaligned_one():
    from mvideo_core.extraction.classic import ClassicTracker

    frames, masks = _moving_square_video()
    aligned = score_clip(frames, masks, ClassicTracker(), fps=8.0)
    shifted_frames, _ = _moving_square_video(shift=12)  # the object is drawn 12 px right of the condition
    misaligned = score_clip(shifted_frames, masks, ClassicTracker(), fps=8.0)
    assert aligned.miou > 0.8
    assert misaligned.miou < aligned.miou - 0.2


def test_evaluate_cli_scores_a_folder_with_the_classic_tracker(tmp_path, capsys):
    from mvideo_core import evaluate
    from mvideo_core.masks import save_masks
    from mvideo_core.video_io import write_video

    frames, masks = _moving_square_video(num_frames=8)
    write_video(tmp_path / "gen" / "clip1.mp4", frames, 8.0)
    save_masks(MaskSet(masks[None], 8.0, names=["square"]), tmp_path / "cond" / "clip1.npz")
    write_video(tmp_path / "gen" / "orphan.mp4", frames, 8.0)  # no masks: warned about, not scored
    (tmp_path / "cond" / "clip2.npz").write_bytes(b"not an npz")
    write_video(tmp_path / "gen" / "clip2.mp4", frames, 8.0)  # corrupt masks: reported, the rest still runs
    out = tmp_path / "scores.json"
    argv = ["--videos", str(tmp_path / "gen"), "--masks", str(tmp_path / "cond"), "--tracker", "classic"]
    code = evaluate.main([*argv, "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert [c["name"] for c in report["clips"]] == ["clip1.mp4"]
    assert report["clips"][0]["miou"] > 0.8 and report["clips"][0]["frames_scored"] == 8
    assert report["S_m"] == pytest.approx(100 * report["miou"], abs=0.01)
    assert "clip2.mp4" in report["failed"]
    assert "S_m =" in capsys.readouterr().out


def test_evaluate_cli_reads_a_pairs_csv(tmp_path, capsys, monkeypatch):
    from mvideo_core import evaluate
    from mvideo_core.masks import save_masks
    from mvideo_core.video_io import write_video

    frames, masks = _moving_square_video(num_frames=8)
    write_video(tmp_path / "a" / "generated.mp4", frames, 8.0)
    save_masks(MaskSet(masks[None], 8.0), tmp_path / "b" / "whatever.zip")
    (tmp_path / "pairs.csv").write_text("video,masks\na/generated.mp4,b/whatever.zip\n")
    monkeypatch.setattr("mvideo_core.extraction.load_tracker", lambda *a, **k: BoxTracker())
    assert evaluate.main(["--pairs", str(tmp_path / "pairs.csv")]) == 0
    assert "S_m = 100.00" in capsys.readouterr().out


def test_evaluate_cli_without_pairs_says_how_to_name_files(tmp_path):
    from mvideo_core import evaluate

    (tmp_path / "v").mkdir()
    with pytest.raises(SystemExit, match="same stem"):
        evaluate.main(["--videos", str(tmp_path / "v")])
