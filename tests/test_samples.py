"""Procedural samples: exact masks, the motions they promise, determinism, and the committed files."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from mvideo_core import samples
from mvideo_core.samples import SAMPLES_DIR, SampleError, list_samples, load_sample, make_sample, write_samples

SMALL = {"size": (96, 144), "num_frames": 17}


@pytest.fixture(scope="module")
def rendered():
    return {name: make_sample(name, **SMALL) for name in list_samples()}


def test_three_samples_with_named_objects(rendered):
    assert list_samples() == ["shapes", "zoom", "figure"]
    names = {name: maskset.names for name, (_, maskset) in rendered.items()}
    assert names == {"shapes": ["ball", "box"], "zoom": ["kite"], "figure": ["person"]}
    for video, maskset in rendered.values():
        assert video.frames.shape == (17, 96, 144, 3) and video.frames.dtype == np.uint8 and video.fps == 8.0
        maskset.check_matches_video(video.num_frames, *video.size)
        areas = maskset.masks.reshape(maskset.num_objects, 17, -1).sum(axis=2)
        assert (areas > 20).all()  # every object visible in every frame


@pytest.mark.parametrize("name", ["shapes", "zoom", "figure"])
def test_masks_are_exactly_the_painted_pixels(monkeypatch, rendered, name):
    scene = samples._SCENES[name]
    monkeypatch.setitem(samples._SCENES, name, lambda rng, frame: (scene(rng, frame)[0], []))
    background, _ = make_sample(name, **SMALL)  # same seed, same camera, no objects
    video, maskset = rendered[name]
    changed = (video.frames != background.frames).any(axis=-1)
    union = maskset.union()
    assert not (changed & ~union).any()  # nothing outside the masks was painted
    assert (union & ~changed).mean() < 1e-3  # and the masks hold only painted pixels (bar equal-colour luck)


def test_shapes_box_occludes_ball_and_masks_are_visible_parts(rendered):
    _, maskset = rendered["shapes"]
    ball, box = maskset.masks
    assert not (ball & box).any()
    ball_area = ball.reshape(17, -1).sum(axis=1)
    assert ball_area.min() < 0.85 * ball_area.max()  # partly hidden while the box passes in front


def test_zoom_kite_grows(rendered):
    _, maskset = rendered["zoom"]
    area = maskset.masks[0].reshape(17, -1).sum(axis=1)
    assert area[-1] > 4 * area[0]
    assert (np.diff(area) > -0.05 * area[1:]).all()  # grows steadily


def test_figure_limbs_move(rendered):
    _, maskset = rendered["figure"]
    widths = []
    for mask in maskset.masks[0]:
        cols = np.flatnonzero(mask.any(axis=0))
        widths.append(cols[-1] - cols[0])
    assert max(widths) > 1.5 * min(widths)  # legs and arms swing out and back


@pytest.mark.parametrize("name", ["shapes", "zoom", "figure"])
def test_camera_moves_and_background_is_textured(rendered, name):
    video, maskset = rendered[name]
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) for f in video.frames[[0, 8]]]
    assert np.abs(grey[1] - grey[0])[~maskset.union()[0]].mean() > 5  # the background changed
    assert cv2.Laplacian(grey[0], cv2.CV_32F).std() > 4  # fine texture for optical flow


def test_deterministic_by_seed():
    a, ma = make_sample("figure", size=(48, 64), num_frames=4, seed=3)
    b, mb = make_sample("figure", size=(48, 64), num_frames=4, seed=3)
    c, _ = make_sample("figure", size=(48, 64), num_frames=4, seed=4)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(ma.masks, mb.masks)
    assert not np.array_equal(a.frames, c.frames)


def test_bad_sample_requests():
    with pytest.raises(SampleError, match=r"unknown sample 'cat'.*shapes"):
        make_sample("cat")
    with pytest.raises(SampleError, match="at least 16x16"):
        make_sample("shapes", size=(8, 8))
    with pytest.raises(SampleError, match="num_frames"):
        make_sample("shapes", num_frames=0)


def test_missing_files_say_how_to_regenerate(tmp_path):
    with pytest.raises(SampleError, match="python -m mvideo_core.samples --out assets/samples") as caught:
        load_sample("shapes", folder=tmp_path)
    assert isinstance(caught.value, FileNotFoundError)  # the studio falls back to make_sample on this


def test_write_samples_and_cli_round_trip(tmp_path):
    samples.main(["--out", str(tmp_path), "--size", "32", "48", "--frames", "3"])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [e["name"] for e in manifest["samples"]] == list_samples()
    video, maskset = load_sample("zoom", folder=tmp_path)
    assert video.frames.shape == (3, 32, 48, 3) and maskset.names == ["kite"]


def test_committed_samples_match_the_generator():
    manifest = json.loads((SAMPLES_DIR / "manifest.json").read_text())
    total = sum(p.stat().st_size for p in SAMPLES_DIR.iterdir() if p.is_file())
    assert total < 3 * 1024**2
    for entry in manifest["samples"]:
        video, maskset = load_sample(entry["name"])
        assert (video.num_frames, video.size, video.fps) == (
            entry["num_frames"],
            (entry["height"], entry["width"]),
            8.0,
        )
        fresh, fresh_masks = make_sample(
            entry["name"], size=(entry["height"], entry["width"]), num_frames=entry["num_frames"], seed=entry["seed"]
        )
        np.testing.assert_array_equal(maskset.masks, fresh_masks.masks)
        assert np.abs(video.frames.astype(np.int16) - fresh.frames).mean() < 8  # the mp4 is the render, compressed


def test_write_samples_returns_manifest_next_to_files(tmp_path):
    manifest = write_samples(tmp_path, size=(32, 32), num_frames=2)
    files = {p.name for p in tmp_path.iterdir()}
    assert manifest.name == "manifest.json"
    assert {f"{n}.mp4" for n in list_samples()} | {f"{n}_masks.npz" for n in list_samples()} <= files
