"""Mask import/export round trips (zip PNG, npz, label mp4, COCO RLE), foreign layouts, bad files, overlays."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pycocotools import mask as mask_utils

from mvideo_core.masks import (
    PALETTE,
    MaskError,
    MaskSet,
    load_masks,
    render_overlay,
    save_masks,
    write_overlay_video,
)
from mvideo_core.video_io import read_video, write_video


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@st.composite
def masksets(draw, max_objects: int = 4) -> MaskSet:
    """Random mask sets: random blobs and noise, overlaps, empty objects and odd sizes included."""
    k = draw(st.integers(0, max_objects))
    t, h, w = draw(st.integers(1, 4)), draw(st.integers(1, 24)), draw(st.integers(1, 24))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    density = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9]))
    masks = rng.random((k, t, h, w)) < density
    ids = draw(st.lists(st.integers(1, 300), min_size=k, max_size=k, unique=True))
    names = draw(st.lists(st.text("abcdefgh XYZ-é", min_size=1, max_size=10), min_size=k, max_size=k))
    fps = draw(st.sampled_from([8.0, 12.5, 24.0, 29.97]))
    return MaskSet(masks, fps, ids, names, {"tracker": "test", "seed": 3})


def assert_same(loaded: MaskSet, original: MaskSet) -> None:
    assert loaded.ids == original.ids and loaded.names == original.names
    assert loaded.fps == pytest.approx(original.fps)
    assert loaded.masks.shape == original.masks.shape and loaded.masks.dtype == bool
    np.testing.assert_array_equal(loaded.masks, original.masks)
    assert loaded.meta == original.meta


# -- lossless round trips --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".zip", ".npz", ".json"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(maskset=masksets())
def test_round_trip_is_lossless(tmp_path, suffix, maskset):
    path = save_masks(maskset, tmp_path / f"masks{suffix}")
    assert path.suffix == suffix
    assert_same(load_masks(path), maskset)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(maskset=masksets(max_objects=3))
def test_label_video_round_trip_keeps_every_object_and_overlap(tmp_path, maskset):
    path = save_masks(maskset, tmp_path / "masks.mp4")
    loaded = load_masks(path)
    assert loaded.ids == maskset.ids and loaded.names == maskset.names and loaded.masks.shape == maskset.masks.shape
    for k in range(maskset.num_objects):
        assert iou(loaded.masks[k], maskset.masks[k]) >= 0.99
    np.testing.assert_array_equal(loaded.masks, maskset.masks)  # x264 qp 0 on luma: exact


def test_label_video_survives_lossy_reencode(tmp_path, small_sample):
    _, maskset = small_sample
    path = save_masks(maskset, tmp_path / "labels.mp4")
    lossy = tmp_path / "lossy.mp4"
    cmd = ["ffmpeg", "-y", "-v", "error", "-i", str(path), "-c:v", "libx264", "-crf", "28", str(lossy)]
    subprocess.run(cmd, check=True)
    assert lossy.stat().st_size > 0
    loaded = load_masks(lossy)
    assert loaded.ids == maskset.ids and loaded.names == maskset.names
    for k in range(maskset.num_objects):
        assert iou(loaded.masks[k], maskset.masks[k]) >= 0.99


def test_label_png_zip_round_trip_keeps_top_object(tmp_path):
    masks = np.zeros((2, 3, 8, 10), dtype=bool)
    masks[0, :, :4] = True
    masks[1, :, 2:6] = True  # overlaps rows 2-3 of object 0; object 1 is on top there
    maskset = MaskSet(masks, 8, [4, 9], ["dog", "ball"])
    loaded = load_masks(save_masks(maskset, tmp_path / "labels.zip", format="zip-labels"))
    assert loaded.ids == [4, 9] and loaded.names == ["dog", "ball"] and loaded.fps == 8
    np.testing.assert_array_equal(loaded.masks[1], masks[1])
    np.testing.assert_array_equal(loaded.masks[0], masks[0] & ~masks[1])
    with zipfile.ZipFile(tmp_path / "labels.zip") as archive:
        image = Image.open(io.BytesIO(archive.read("00000.png")))
        assert image.mode == "P" and np.asarray(image)[0, 0] == 4


def test_format_argument_wins_over_suffix(tmp_path, small_sample):
    _, maskset = small_sample
    path = save_masks(maskset, tmp_path / "masks.tmp", format="npz")
    assert path.name == "masks.tmp"
    assert_same(load_masks(path), maskset)  # the content tells npz from the PNG zip


def test_load_resamples_to_requested_fps(tmp_path):
    masks = np.zeros((1, 24, 4, 4), dtype=bool)
    masks[0, ::3, 0, 0] = True  # frames 0, 3, 6, ... at 24 fps
    path = save_masks(MaskSet(masks, 24.0), tmp_path / "m.npz")
    loaded = load_masks(path, fps=8.0)
    assert loaded.fps == 8.0 and loaded.num_frames == 8 and loaded.masks[0, :, 0, 0].all()


def test_sample_round_trip_all_formats(tmp_path, small_sample):
    _, maskset = small_sample
    for suffix in (".zip", ".npz", ".mp4", ".json"):
        assert_same(load_masks(save_masks(maskset, tmp_path / f"s{suffix}")), maskset)


# -- files from other tools ------------------------------------------------------------------------------------


def _zip_pngs(path: Path, images: list[Image.Image], pattern: str = "annotations/{:05d}.png") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for i, image in enumerate(images):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            archive.writestr(pattern.format(i), buffer.getvalue())
    return path


def test_unpadded_frame_numbers_load_in_numeric_order(tmp_path):
    frames = np.zeros((12, 4, 4), dtype=np.uint8)
    for i in range(12):
        frames[i, 0, 0] = 255 if i % 2 else 0
        frames[i, 3, 3] = 255
    loaded = load_masks(_zip_pngs(tmp_path / "f.zip", [Image.fromarray(f) for f in frames], "frame_{}.png"))
    np.testing.assert_array_equal(loaded.masks[0, :, 0, 0], [bool(i % 2) for i in range(12)])


def test_davis_style_indexed_label_pngs_import(tmp_path):
    labels = np.zeros((3, 6, 8), dtype=np.uint8)
    labels[:, :3, :4] = 1
    labels[1:, 3:, 4:] = 2
    images = []
    for frame in labels:
        image = Image.fromarray(frame)
        image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
        images.append(image)
    loaded = load_masks(_zip_pngs(tmp_path / "davis.zip", images), fps=24)
    assert loaded.ids == [1, 2] and loaded.fps == 24
    np.testing.assert_array_equal(loaded.masks[0], labels == 1)
    np.testing.assert_array_equal(loaded.masks[1], labels == 2)


def test_black_and_white_png_zip_is_one_object(tmp_path):
    frames = np.zeros((2, 5, 5), dtype=np.uint8)
    frames[:, 1:4, 1:4] = 255
    loaded = load_masks(_zip_pngs(tmp_path / "bw.zip", [Image.fromarray(f) for f in frames]))
    assert loaded.ids == [1] and loaded.fps == 8.0
    np.testing.assert_array_equal(loaded.masks[0], frames > 0)


def test_black_and_white_mask_video_from_another_tool_is_one_object(tmp_path):
    masks = np.zeros((6, 32, 48), dtype=bool)
    for t in range(6):
        masks[t, 8:24, 4 + 4 * t : 20 + 4 * t] = True
    path = write_video(tmp_path / "mask.mp4", np.repeat(masks[..., None], 3, axis=3).astype(np.uint8) * 255, 8)
    loaded = load_masks(path)
    assert loaded.num_objects == 1 and loaded.fps == 8.0
    assert iou(loaded.masks[0], masks) >= 0.99


def test_sav_masklet_json_imports(tmp_path):
    masks = np.zeros((2, 3, 6, 7), dtype=bool)  # [K, T, H, W]
    masks[0, :, :3] = True
    masks[1, 1:, 4:] = True
    masklet = [
        [
            {"size": [6, 7], "counts": mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode()}
            for m in masks[:, t]
        ]
        for t in range(3)
    ]
    path = tmp_path / "sav.json"
    path.write_text(json.dumps({"masklet": masklet, "video_height": 6, "video_width": 7, "masklet_id": [0, 1]}))
    loaded = load_masks(path, fps=6)
    assert loaded.ids == [1, 2] and loaded.fps == 6
    np.testing.assert_array_equal(loaded.masks, masks)


def test_uncompressed_rle_and_missing_frames_import(tmp_path):
    doc = {
        "videos": [{"id": 7, "width": 3, "height": 2, "length": 2}],
        "categories": [{"id": 1, "name": "cat"}],
        # column-major runs: 1 off, 2 on, 3 off -> pixels (1,0), (0,1) set
        "annotations": [
            {"id": 1, "video_id": 7, "category_id": 1, "segmentations": [None, {"size": [2, 3], "counts": [1, 2, 3]}]}
        ],
    }
    path = tmp_path / "vis.json"
    path.write_text(json.dumps(doc))
    loaded = load_masks(path)
    assert loaded.names == ["cat"] and loaded.fps == 8.0
    assert not loaded.masks[0, 0].any()
    np.testing.assert_array_equal(loaded.masks[0, 1], [[False, True, False], [True, False, False]])


# -- bad files and inputs --------------------------------------------------------------------------------------


def test_unknown_suffix_and_format_name_the_supported_ones(tmp_path, small_sample):
    _, maskset = small_sample
    with pytest.raises(MaskError, match=r"\.zip.*\.npz.*\.mp4.*\.json"):
        save_masks(maskset, tmp_path / "masks.txt")
    with pytest.raises(MaskError, match="unknown mask format"):
        save_masks(maskset, tmp_path / "masks.zip", format="gif")
    with pytest.raises(MaskError, match="needs a MaskSet"):
        save_masks(maskset.masks, tmp_path / "masks.npz")


def test_missing_empty_and_folder_paths(tmp_path):
    with pytest.raises(MaskError, match="no such mask file"):
        load_masks(tmp_path / "nope.npz")
    (tmp_path / "empty.zip").write_bytes(b"")
    with pytest.raises(MaskError, match="empty"):
        load_masks(tmp_path / "empty.zip")
    with pytest.raises(MaskError, match="folder"):
        load_masks(tmp_path)


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("bad.zip", b"PK\x03\x04 not really a zip", "not a readable zip"),
        ("bad.npz", b"garbage bytes", "not a readable npz"),
        ("bad.json", b"{not json", "not valid JSON"),
        ("other.json", b'{"images": []}', "not COCO-style video masks"),
        ("bad.mp4", b"\x00\x00\x00\x18ftypisom garbage", "not a readable video"),
        ("notes.dat", b"hello", "not a mask file"),
    ],
)
def test_corrupt_files_raise_mask_error_with_advice(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(MaskError, match=match):
        load_masks(tmp_path / name)


def test_zip_problems_are_named(tmp_path, small_sample):
    with zipfile.ZipFile(tmp_path / "nopng.zip", "w") as archive:
        archive.writestr("readme.txt", "hi")
    with pytest.raises(MaskError, match="holds no PNG"):
        load_masks(tmp_path / "nopng.zip")
    sizes = [Image.fromarray(np.zeros((4, 4), np.uint8)), Image.fromarray(np.zeros((5, 4), np.uint8))]
    with pytest.raises(MaskError, match="different sizes"):
        load_masks(_zip_pngs(tmp_path / "sizes.zip", sizes))
    colour = Image.fromarray(np.random.default_rng(0).integers(0, 255, (4, 4, 3), dtype=np.uint8))
    with pytest.raises(MaskError, match="indexed .palette. or greyscale"):
        load_masks(_zip_pngs(tmp_path / "colour.zip", [colour]))
    # a zip written by save_masks that lost a frame
    _, maskset = small_sample
    full = save_masks(maskset, tmp_path / "full.zip")
    with zipfile.ZipFile(full) as src, zipfile.ZipFile(tmp_path / "cut.zip", "w") as dst:
        for item in src.namelist():
            if item != "obj_001/00003.png":
                dst.writestr(item, src.read(item))
    with pytest.raises(MaskError, match="missing obj_001/00003.png"):
        load_masks(tmp_path / "cut.zip")


def test_npz_problems_are_named(tmp_path):
    np.savez(tmp_path / "nokey.npz", labels=np.zeros((2, 2)))
    with pytest.raises(MaskError, match="no 'masks' array"):
        load_masks(tmp_path / "nokey.npz")
    np.savez(tmp_path / "floats.npz", masks=np.full((1, 2, 3, 3), 0.7))
    with pytest.raises(MaskError, match="threshold"):
        load_masks(tmp_path / "floats.npz")
    np.savez(tmp_path / "pickled.npz", masks=np.array([{"a": 1}], dtype=object))
    with pytest.raises(MaskError, match="pickled"):
        load_masks(tmp_path / "pickled.npz")
    np.savez(tmp_path / "single.npz", masks=np.ones((2, 3, 3), dtype=bool), fps=np.array(12.0))
    loaded = load_masks(tmp_path / "single.npz")
    assert loaded.masks.shape == (1, 2, 3, 3) and loaded.fps == 12.0


def test_coco_size_mismatch_is_named(tmp_path):
    rle = mask_utils.encode(np.asfortranarray(np.ones((4, 4), np.uint8)))
    doc = {
        "videos": [{"id": 1, "width": 5, "height": 5, "length": 1}],
        "annotations": [
            {"id": 1, "video_id": 1, "segmentations": [{"size": [4, 4], "counts": rle["counts"].decode()}]}
        ],
    }
    (tmp_path / "m.json").write_text(json.dumps(doc))
    with pytest.raises(MaskError, match=r"RLE size \[4, 4\] does not match the video size \[5, 5\]"):
        load_masks(tmp_path / "m.json")


def test_empty_mask_set_round_trips(tmp_path):
    empty = MaskSet(np.zeros((0, 3, 4, 5), dtype=bool), 8)
    for suffix in (".zip", ".npz", ".mp4", ".json"):
        loaded = load_masks(save_masks(empty, tmp_path / f"e{suffix}"))
        assert loaded.masks.shape == (0, 3, 4, 5)


# -- overlays --------------------------------------------------------------------------------------------------


def test_overlay_tints_objects_and_leaves_background():
    frames = np.full((2, 40, 60, 3), 100, dtype=np.uint8)
    masks = np.zeros((1, 2, 40, 60), dtype=bool)
    masks[0, :, 20:36, 10:30] = True
    maskset = MaskSet(masks, 8, [1], ["cat"])
    out = render_overlay(frames, maskset, alpha=0.5, labels=False)
    expected = (100 * 0.5 + PALETTE[0].astype(np.float32) * 0.5).astype(np.uint8)
    np.testing.assert_array_equal(out[:, 28, 20], np.broadcast_to(expected, (2, 3)))  # interior
    np.testing.assert_array_equal(out[:, 5, 50], frames[:, 5, 50])  # far background
    assert (frames == 100).all()  # input untouched


def test_overlay_labels_draw_the_name_above_the_object():
    frames = np.full((1, 80, 120, 3), 100, dtype=np.uint8)
    masks = np.zeros((1, 1, 80, 120), dtype=bool)
    masks[0, 0, 40:70, 40:80] = True
    maskset = MaskSet(masks, 8, [1], ["person"])
    plain = render_overlay(frames, maskset, labels=False)
    labelled = render_overlay(frames, maskset, labels=True)
    changed = np.argwhere((plain != labelled).any(axis=-1)[0])
    assert len(changed) > 20
    assert changed[:, 0].max() < 40  # text sits above the object's top edge


def test_overlay_rejects_size_mismatch_and_bad_frames():
    maskset = MaskSet(np.zeros((1, 2, 8, 8), dtype=bool), 8)
    with pytest.raises(MaskError, match="resample/resize the masks"):
        render_overlay(np.zeros((2, 8, 9, 3), dtype=np.uint8), maskset)
    with pytest.raises(MaskError, match="resample/resize the masks"):
        render_overlay(np.zeros((3, 8, 8, 3), dtype=np.uint8), maskset)
    with pytest.raises(MaskError, match="uint8"):
        render_overlay(np.zeros((2, 8, 8, 3), dtype=np.float32), maskset)
    with pytest.raises(MaskError, match="alpha"):
        render_overlay(np.zeros((2, 8, 8, 3), dtype=np.uint8), maskset, alpha=2)


def test_more_objects_than_palette_colours_get_distinct_hue_walk_colours():
    k = len(PALETTE) + 6
    masks = np.zeros((k, 1, 4, 4 * k), dtype=bool)
    for i in range(k):
        masks[i, 0, :, 4 * i : 4 * i + 4] = True
    maskset = MaskSet(masks, 8)
    colours = {tuple(c) for c in maskset.colors().tolist()}
    assert len(colours) == k
    out = render_overlay(np.zeros((1, 4, 4 * k, 3), dtype=np.uint8), maskset, alpha=1.0, labels=False)
    assert len({tuple(out[0, 2, 4 * i + 2]) for i in range(k)}) == k


def test_write_overlay_video(tmp_path, small_sample):
    video, maskset = small_sample
    path = write_overlay_video(tmp_path / "preview.mp4", video.frames, maskset, video.fps)
    decoded = read_video(path)
    assert decoded.frames.shape == video.frames.shape and decoded.fps == video.fps
