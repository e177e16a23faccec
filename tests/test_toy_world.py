"""The toy world: exact visible masks, determinism, captions, disjoint splits, colour reading, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from research.toy import world
from research.toy.world import (
    COLORS,
    SPLITS,
    _background,
    caption_for,
    caption_words,
    make_clip,
    render_scene,
    sample_scene,
    shape_mask,
    subject_color,
)


@given(split=st.sampled_from(sorted(SPLITS)), index=st.integers(0, 10_000))
@settings(max_examples=25, deadline=None)
def test_masks_are_exact_visible_regions(split, index):
    clip = make_clip(split, index, num_frames=5)
    scene = clip.scene
    masks = clip.masks.masks  # [K, T, H, W]
    assert masks.shape == (len(scene.subjects), 5, world.HEIGHT, world.WIDTH)
    assert clip.frames.shape == (5, world.HEIGHT, world.WIDTH, 3) and clip.frames.dtype == np.uint8
    # visible masks never overlap (a later subject occludes an earlier one)
    assert (masks.sum(axis=0) <= 1).all()
    for t in range(5):
        bg = _background(scene.background, world.HEIGHT, world.WIDTH, scene.camera_pan * t / world.FPS, scene.seed)
        outside = ~masks[:, t].any(axis=0)
        np.testing.assert_array_equal(clip.frames[t][outside], bg[outside])
        for k, subject in enumerate(scene.subjects):
            inside = clip.frames[t][masks[k, t]].astype(int)  # [N, 3]
            color = np.array(COLORS[subject.color])
            full, dark = np.abs(inside - color).max(1) <= 1, np.abs(inside - np.floor(color * 0.8)).max(1) <= 1
            assert (full | dark).all(), f"pixels of {subject} are not its colour (textured)"


def test_scenes_are_deterministic_and_distinct():
    a, b = make_clip("base", 7), make_clip("base", 7)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.masks.masks, b.masks.masks)
    assert a.caption == b.caption
    c = make_clip("base", 8)
    assert not np.array_equal(a.frames, c.frames)


def test_longer_render_keeps_the_scene_and_caption():
    scene = sample_scene("heldout", 3)
    short, long = render_scene(scene, 33), render_scene(scene, 129)
    assert long.frames.shape[0] == 129 and long.caption == short.caption
    np.testing.assert_array_equal(short.frames[0], long.frames[0])  # same start, slower path


def test_captions_name_colour_shape_motion_background():
    for i in range(40):
        scene = sample_scene("base", i)
        caption = scene.caption
        for s in scene.subjects:
            assert f"a {s.color} {s.shape}" in caption
        assert caption.endswith(f"over a {scene.background}")
        assert set(caption.split()) <= set(caption_words())
    assert sample_scene("heldout", 0).caption.split()[:1] == ["a"]
    two = next(sample_scene("base", i) for i in range(40) if len(sample_scene("base", i).subjects) == 2)
    bare = caption_for(two, motion=False)
    assert bare == f"a {two.subjects[0].color} {two.subjects[0].shape} and a {two.subjects[1].color} " + (
        f"{two.subjects[1].shape} over a {two.background}"
    )
    assert not {"moves", "move", "uphill", "downhill", "zoom", "zooms", "left", "right"} & set(bare.split())


def test_splits_hold_out_shapes_motions_and_colours():
    assert not set(SPLITS["heldout"].shapes) & (set(SPLITS["base"].shapes) | set(SPLITS["mask"].shapes))
    assert not set(SPLITS["heldout"].motions) & (set(SPLITS["base"].motions) | set(SPLITS["mask"].motions))
    assert set(SPLITS["mask"].colors) < set(SPLITS["base"].colors)
    assert not set(SPLITS["text"].colors) & set(SPLITS["mask"].colors)
    assert len(SPLITS["base"].colors) >= 6
    mask_colors = {s.color for i in range(60) for s in sample_scene("mask", i).subjects}
    assert mask_colors <= set(SPLITS["mask"].colors)
    kinds = {sample_scene("base", i).subjects[0].motion for i in range(80)}
    assert {"uphill", "downhill", "zoom_in", "right"} <= kinds
    assert any(len(sample_scene("base", i).subjects) == 2 for i in range(40))


def test_wander_paths_are_curved_distinct_and_stay_in_frame():
    """'wander' (trained) is a random smooth curve per scene: the mask data holds paths no motion word predicts."""
    scenes = [sample_scene("mask", i) for i in range(400)]
    wander = [s for s in scenes if s.subjects[0].motion == "wander" and len(s.subjects) == 1][:6]
    assert len(wander) >= 4
    paths = []
    for scene in wander:
        masks = render_scene(scene).masks.masks[0]  # [T, H, W]
        assert masks.any(axis=(1, 2)).all()  # the subject stays in the frame
        ys, xs = zip(*[np.argwhere(m).mean(0) for m in masks])
        path = np.stack([xs, ys], 1)
        chord = path[-1] - path[0]
        bend = np.abs(np.cross(chord, path - path[0])) / max(np.linalg.norm(chord), 1e-6)
        assert bend.max() > 2.0  # off the straight line by more than 2 px somewhere: a curve
        paths.append(path)
    assert min(np.abs(a - b).mean() for i, a in enumerate(paths) for b in paths[i + 1 :]) > 2.0  # all distinct
    assert "wanders" in caption_for(wander[0]) and "wanders" not in caption_for(wander[0], motion=False)


def test_ring_has_a_hole_and_shapes_grow_with_radius():
    ring = shape_mask("ring", 48, 32, 10, 0, 64, 96)
    assert not ring[32, 48] and ring[32, 57]
    small, big = shape_mask("star", 48, 32, 5, 0, 64, 96), shape_mask("star", 48, 32, 10, 0, 64, 96)
    assert big.sum() > 3 * small.sum() and (small <= big).all()


def test_subject_color_reads_world_clips():
    for i in range(6):
        clip = make_clip("text", i)
        assert subject_color(clip.frames) == clip.scene.subjects[0].color
        assert subject_color(clip.frames, clip.masks.union()) == clip.scene.subjects[0].color
    flat = np.full((3, 64, 96, 3), 90, np.uint8)
    assert subject_color(flat) is None


@pytest.mark.parametrize(
    "split, index, window", [("base", 5, (0, 9)), ("base", 11, (17, 26)), ("heldout", 2, (24, 33))]
)
def test_a_window_render_is_the_slice_of_the_full_render(split, index, window):
    full, part = make_clip(split, index), make_clip(split, index, window=window)
    a, b = window
    np.testing.assert_array_equal(part.frames, full.frames[a:b])
    np.testing.assert_array_equal(part.masks.masks, full.masks.masks[:, a:b])
    assert part.caption == full.caption and part.frames.shape[0] == b - a


def test_bad_inputs_have_clear_errors():
    with pytest.raises(ValueError, match="unknown split"):
        sample_scene("nope", 0)
    with pytest.raises(ValueError, match="non-negative"):
        sample_scene("base", -1)
    with pytest.raises(ValueError, match="num_frames"):
        render_scene(sample_scene("base", 0), 0)
    for bad in ((5, 5), (-1, 4), (30, 34)):
        with pytest.raises(ValueError, match=r"window must be \(start, stop\) with 0 <= start < stop <= 33"):
            render_scene(sample_scene("base", 0), 33, window=bad)
    with pytest.raises(ValueError, match="unknown shape"):
        shape_mask("blob", 1, 1, 1, 0, 8, 8)
    with pytest.raises(ValueError, match="frames must be"):
        subject_color(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="must match"):
        subject_color(np.zeros((2, 4, 4, 3), np.uint8), np.zeros((2, 4, 5), bool))
