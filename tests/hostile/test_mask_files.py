"""Hostile mask files, in process: every one is refused with a MaskError that names what is wrong, never a raw
numpy / PyAV / PIL / pycocotools error, and nothing past the budget is allocated."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from makers import audio_only_mp4, coco_json, h264_video, label_tag, repeated_keyframe_video
from PIL import Image

from mvideo_core.budget import Budget
from mvideo_core.masks import MaskError, MaskSet, load_masks, resample_maskset, save_masks

pytestmark = pytest.mark.bad_input

FORMATS = {"objects.zip": None, "labels.zip": "zip-labels", "masks.npz": None, "labels.mp4": None, "coco.json": None}


def good_set() -> MaskSet:
    """2 overlapping objects, 4 frames of 12x16."""
    masks = np.zeros((2, 4, 12, 16), dtype=bool)
    masks[0, :, 2:8, 3:9] = True
    masks[1, :, 5:11, 6:14] = True
    return MaskSet(masks, 8.0, [1, 2], ["dog", "ball"])


@pytest.fixture(scope="module")
def good_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("good")
    return {name: save_masks(good_set(), folder / name, format=fmt) for name, fmt in FORMATS.items()}


def refuse(path: Path, *words: str, **kwargs) -> MaskError:
    with pytest.raises(MaskError) as info:
        load_masks(path, **kwargs)
    message = str(info.value)
    for word in words:
        assert word.lower() in message.lower(), f"{message!r} does not name {word!r}"
    return info.value


# -- bytes: truncated, random, empty, another format's bytes -------------------------------------------------------


@pytest.mark.parametrize(
    "fraction", [0.0, 0.1, 0.5, 0.9, 0.99, -1], ids=["1byte", "10pc", "half", "90pc", "99pc", "less1"]
)
@pytest.mark.parametrize("name", list(FORMATS))
def test_truncated_file_is_refused(tmp_path, good_files, name, fraction):
    data = good_files[name].read_bytes()
    cut = len(data) - 1 if fraction == -1 else max(1, int(len(data) * fraction))
    path = tmp_path / name
    path.write_bytes(data[:cut])
    refuse(path, name)


@pytest.mark.parametrize("name", list(FORMATS))
def test_random_bytes_are_refused(tmp_path, good_files, name):
    size = good_files[name].stat().st_size
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes())
    refuse(path, name)


@pytest.mark.parametrize("name", list(FORMATS))
def test_empty_file_is_refused(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    refuse(tmp_path / name, "empty (0 bytes)")


@pytest.mark.parametrize(
    "content, suffix",
    [
        ("labels.mp4", ".json"),
        ("coco.json", ".npz"),
        ("masks.npz", ".mp4"),
        ("coco.json", ".zip"),
        ("labels.mp4", ".zip"),
    ],
)
def test_another_formats_bytes_under_a_suffix_are_refused(tmp_path, good_files, content, suffix):
    path = tmp_path / f"wrong{suffix}"
    path.write_bytes(good_files[content].read_bytes())
    refuse(path, path.name)


def test_text_file_without_a_known_suffix_is_refused(tmp_path):
    (tmp_path / "notes.dat").write_text("hello")
    refuse(tmp_path / "notes.dat", "not a mask file")


@pytest.mark.parametrize("what", ["missing", "folder"])
def test_missing_path_and_folder_are_refused(tmp_path, what):
    path = tmp_path / "nope.npz" if what == "missing" else tmp_path
    refuse(path, "no such mask file" if what == "missing" else "is a folder")


@pytest.mark.parametrize("fps", [float("nan"), 0, -8, float("inf"), "fast"])
def test_bad_fps_argument_is_refused(good_files, fps):
    refuse(good_files["masks.npz"], "fps", fps=fps)


# -- COCO json: every declared field wrong --------------------------------------------------------------------------

BAD_NUMBERS = [-1, 1.5, "tall", None, 1e30, float("nan"), [], {}]


@pytest.mark.parametrize("value", BAD_NUMBERS, ids=[repr(v) for v in BAD_NUMBERS])
@pytest.mark.parametrize("field", ["height", "width"])
def test_coco_bad_declared_size_is_refused(tmp_path, field, value):
    sizes = {"height": 12, "width": 16, field: value}
    path = coco_json(tmp_path / "m.json", 4, sizes["height"], sizes["width"])
    refuse(path, "m.json")


@pytest.mark.parametrize("value", [-1, 1.5, "long", 1e30, float("nan"), [3], {"n": 3}])
def test_coco_bad_declared_length_is_refused(tmp_path, value):
    refuse(coco_json(tmp_path / "m.json", value, 12, 16), "m.json")


@pytest.mark.parametrize(
    "frames, height, width, objects, words",
    [
        (300, 3000, 3333, 1, ["2.79 GiB", "2 GiB"]),
        (4000, 2, 2, 1, ["4000 frames", "--max-frames"]),
        (1, 9000, 9000, 1, ["9000x9000", "--max-pixels"]),
        (100, 480, 720, 80, ["80 objects", "2 GiB"]),
        (10**12, 10**6, 10**6, 1, ["--max-frames"]),
    ],
    ids=["3GiB", "frames", "pixels", "objects", "exabytes"],
)
def test_coco_declaring_more_than_the_budget_is_refused(tmp_path, frames, height, width, objects, words):
    refuse(coco_json(tmp_path / "big.json", frames, height, width, objects=objects), "big.json", *words)


def coco_doc(**changes) -> dict:
    doc = {
        "videos": [{"id": 1, "length": 2, "height": 4, "width": 4}],
        "annotations": [{"id": 1, "video_id": 1, "segmentations": [None, {"size": [4, 4], "counts": [16]}]}],
    }
    for key, value in changes.items():
        if key.startswith("seg"):
            doc["annotations"][0]["segmentations"][1] = value
        else:
            doc[key] = value
    return doc


COCO_DOCS = {
    "videos-empty": coco_doc(videos=[]),
    "videos-not-list": coco_doc(videos="video"),
    "video-not-object": coco_doc(videos=[7]),
    "video-no-height": coco_doc(videos=[{"id": 1, "length": 2, "width": 4}]),
    "annotations-not-list": coco_doc(annotations={"a": 1}),
    "segmentations-missing": coco_doc(annotations=[{"id": 1, "video_id": 1}]),
    "segmentations-not-list": coco_doc(annotations=[{"id": 1, "video_id": 1, "segmentations": "rle"}]),
    "segmentations-short": coco_doc(annotations=[{"id": 1, "video_id": 1, "segmentations": [None]}]),
    "rle-not-object": coco_doc(seg="counts"),
    "rle-no-counts": coco_doc(seg={"size": [4, 4]}),
    "rle-size-mismatch": coco_doc(seg={"size": [5, 4], "counts": [20]}),
    "rle-size-garbage": coco_doc(seg={"size": "big", "counts": [16]}),
    "rle-counts-empty-string": coco_doc(seg={"size": [4, 4], "counts": ""}),
    "rle-counts-garbage": coco_doc(seg={"size": [4, 4], "counts": "garbage!!"}),
    "rle-counts-unfinished": coco_doc(seg={"size": [4, 4], "counts": "0o"}),
    "rle-counts-negative": coco_doc(seg={"size": [4, 4], "counts": [-5, 21]}),
    "rle-counts-float": coco_doc(seg={"size": [4, 4], "counts": [1.5, 14.5]}),
    "rle-counts-short": coco_doc(seg={"size": [4, 4], "counts": [3, 4]}),
    "rle-counts-long": coco_doc(seg={"size": [4, 4], "counts": [10, 10]}),
    "rle-counts-number": coco_doc(seg={"size": [4, 4], "counts": 16}),
    "rle-counts-strings": coco_doc(seg={"size": [4, 4], "counts": ["16"]}),
    "top-level-list": [1, 2],
    "top-level-string": "masks",
    "top-level-null": None,
    "images-not-videos": {"images": [], "annotations": []},
}


@pytest.mark.parametrize("doc", list(COCO_DOCS.values()), ids=list(COCO_DOCS))
def test_malformed_coco_is_refused(tmp_path, doc):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc))
    refuse(path, "m.json")


def test_coco_rle_that_decodes_to_uninitialised_memory_is_refused(tmp_path):
    """pycocotools decodes the empty string as a 4x4 mask of whatever memory held (sum 509 seen)."""
    path = tmp_path / "m.json"
    path.write_text(json.dumps(coco_doc(seg={"size": [4, 4], "counts": ""})))
    refuse(path, "RLE counts are malformed", "4x4")


SAV_DOCS = {
    "masklet-empty": {"masklet": []},
    "masklet-string": {"masklet": "rle"},
    "masklet-not-lists": {"masklet": [1, 2]},
    "masklet-bad-rle": {"masklet": [[{"size": [4, 4], "counts": "zzzz"}]]},
    "masklet-size-mismatch": {"masklet": [[{"size": [4, 4], "counts": [16]}]], "video_height": 5, "video_width": 4},
    "masklet-huge": {"masklet": [[None]], "video_height": 90000, "video_width": 90000},
    "masklet-negative": {"masklet": [[None]], "video_height": -4, "video_width": 4},
    "masklet-no-size": {"masklet": [[None]]},
}


@pytest.mark.parametrize("doc", list(SAV_DOCS.values()), ids=list(SAV_DOCS))
def test_malformed_sav_masklet_is_refused(tmp_path, doc):
    path = tmp_path / "sav.json"
    path.write_text(json.dumps(doc))
    refuse(path, "sav.json")


# -- npz ---------------------------------------------------------------------------------------------------------


def npz(path: Path, **arrays) -> Path:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


PACKED = np.packbits(np.ones((1, 2, 4, 8), dtype=bool), axis=-1)  # [1, 2, 4, 1]
NPZ_CASES = {
    "no-masks": ({"labels": np.zeros((2, 2))}, "no 'masks' array"),
    "pickled": ({"masks": np.array([{"a": 1}], dtype=object)}, "pickled"),
    "float": ({"masks": np.full((1, 2, 3, 3), 0.7)}, "threshold"),
    "values-7": ({"masks": np.full((1, 2, 3, 3), 7, np.uint8)}, "0/1 or 0/255"),
    "strings": ({"masks": np.array([["a"]])}, "masks.npz"),
    "2d": ({"masks": np.ones((3, 3), bool)}, "[K, T, H, W]"),
    "5d": ({"masks": np.ones((1, 1, 2, 3, 3), bool)}, "[K, T, H, W]"),
    "zero-frames": ({"masks": np.ones((1, 0, 3, 3), bool)}, "at least one frame"),
    "zero-width": ({"masks": np.ones((1, 2, 3, 0), bool)}, "1x1 pixels"),
    "shape-says-more-frames": ({"masks": PACKED, "shape": np.array([1, 4, 4, 8])}, "'shape' says [1, 4, 4, 8]"),
    "shape-says-wider": ({"masks": PACKED, "shape": np.array([1, 2, 4, 16])}, "inconsistent"),
    "shape-says-fewer": ({"masks": PACKED, "shape": np.array([1, 1, 4, 8])}, "inconsistent"),
    "shape-2-sizes": ({"masks": PACKED, "shape": np.array([4, 8])}, "3 or 4 sizes"),
    "shape-negative": ({"masks": PACKED, "shape": np.array([1, -2, 4, 8])}, "negative"),
    "shape-2d": ({"masks": PACKED, "shape": np.array([[1, 2], [4, 8]])}, "3 or 4 sizes"),
    "shape-huge": ({"masks": PACKED, "shape": np.array([1, 300, 3000, 3333])}, "2.79 GiB"),
    "packed-not-uint8": ({"masks": PACKED.astype(np.int64), "shape": np.array([1, 2, 4, 8])}, "inconsistent"),
    "ids-too-few": ({"masks": np.ones((2, 1, 2, 2), bool), "ids": np.array([1])}, "2 ids and names"),
    "ids-duplicate": ({"masks": np.ones((2, 1, 2, 2), bool), "ids": np.array([3, 3])}, "unique"),
    "ids-zero": ({"masks": np.ones((1, 1, 2, 2), bool), "ids": np.array([0])}, "start at 1"),
    "names-too-many": ({"masks": np.ones((1, 1, 2, 2), bool), "names": np.array(["a", "b"])}, "1 ids and names"),
    "fps-nan": ({"masks": np.ones((1, 1, 2, 2), bool), "fps": np.array(np.nan)}, "fps"),
    "fps-zero": ({"masks": np.ones((1, 1, 2, 2), bool), "fps": np.array(0.0)}, "fps"),
    "fps-negative": ({"masks": np.ones((1, 1, 2, 2), bool), "fps": np.array(-8.0)}, "fps"),
    "fps-inf": ({"masks": np.ones((1, 1, 2, 2), bool), "fps": np.array(np.inf)}, "fps"),
    "fps-array": ({"masks": np.ones((1, 1, 2, 2), bool), "fps": np.array([8.0, 9.0])}, "masks.npz"),
    "meta-not-json": ({"masks": np.ones((1, 1, 2, 2), bool), "meta": np.array("{oops")}, "'meta' is not valid JSON"),
}


@pytest.mark.parametrize("arrays, words", list(NPZ_CASES.values()), ids=list(NPZ_CASES))
def test_malformed_npz_is_refused(tmp_path, arrays, words):
    refuse(npz(tmp_path / "masks.npz", **arrays), "masks.npz", words)


def _npy(shape: tuple[int, ...], dtype: str, payload: bytes) -> bytes:
    """An .npy whose header declares `shape` over `payload` (a few bytes, or anything)."""
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + payload


@pytest.mark.parametrize(
    "shape, words",
    [((1, 300, 3000, 3333), ["2.79 GiB"]), ((10**6, 10**6, 10**6), ["masks.npy"]), ((1, 8, 10**9, 2), ["GiB"])],
    ids=["3GiB", "exabyte", "tall"],
)
def test_npz_header_declaring_a_huge_array_is_refused_before_reading(tmp_path, shape, words):
    path = tmp_path / "masks.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("masks.npy", _npy(shape, "|b1", b"\x00" * 64))
    refuse(path, "masks.npz", *words)


def test_npz_header_declaring_more_than_its_data_is_refused(tmp_path):
    path = tmp_path / "masks.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("masks.npy", _npy((1, 4, 8, 8), "|b1", b"\x01" * 10))
    refuse(path, "masks.npz")


def test_npz_with_a_zip_bomb_member_is_refused(tmp_path):
    """A 60 MB member compressed to ~60 KB, under a 32 MB budget: refused from its declared size."""
    path = tmp_path / "masks.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("masks.npy", _npy((1, 1, 7500, 8000), "|b1", bytes(60_000_000)))
    assert path.stat().st_size < 200_000
    refuse(path, "masks.npz", "57.2 MiB", budget=Budget(max_bytes=32 * 2**20))


def test_npz_with_a_corrupt_deflate_stream_is_refused(tmp_path, good_files):
    data = bytearray(good_files["masks.npz"].read_bytes())
    data[200:260] = bytes(60)  # inside the compressed masks member
    path = tmp_path / "masks.npz"
    path.write_bytes(bytes(data))
    refuse(path, "masks.npz")


# -- zip of PNGs -----------------------------------------------------------------------------------------------------


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height over one tiny IDAT (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def zip_of(path: Path, members: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def index(**changes) -> str:
    doc = {
        "format": "mvideo-masks",
        "version": 1,
        "layout": "objects",
        "fps": 8,
        "num_frames": 2,
        "height": 4,
        "width": 4,
        "objects": [{"id": 1, "name": "a"}],
    }
    doc.update(changes)
    return json.dumps(doc)


FRAME = png_bytes(np.zeros((4, 4), np.uint8))
OBJECT_PNGS = {"obj_001/00000.png": FRAME, "obj_001/00001.png": FRAME}
ZIP_CASES = {
    "index-not-json": ({"masks.json": "{nope", **OBJECT_PNGS}, "not valid JSON"),
    "index-a-list": ({"masks.json": "[1, 2]", **OBJECT_PNGS}, "not a JSON object"),
    "index-no-num-frames": (
        {"masks.json": index(num_frames=None).replace('"num_frames": null, ', ""), **OBJECT_PNGS},
        "masks.zip",
    ),
    "index-frames-negative": ({"masks.json": index(num_frames=-1), **OBJECT_PNGS}, "frames"),
    "index-frames-huge": ({"masks.json": index(num_frames=10**9), **OBJECT_PNGS}, "--max-frames"),
    "index-frames-text": ({"masks.json": index(num_frames="two"), **OBJECT_PNGS}, "frames"),
    "index-size-huge": ({"masks.json": index(height=60000, width=60000), **OBJECT_PNGS}, "--max-pixels"),
    "index-bytes-huge": ({"masks.json": index(num_frames=3000, height=3000, width=3000), **OBJECT_PNGS}, "GiB"),
    "index-objects-huge": (
        {
            "masks.json": index(
                objects=[{"id": i, "name": "x"} for i in range(1, 3000)], num_frames=100, height=100, width=100
            ),
            **OBJECT_PNGS,
        },
        "objects",
    ),
    "index-objects-malformed": ({"masks.json": index(objects=[{"name": "a"}]), **OBJECT_PNGS}, "lacks"),
    "index-objects-not-list": ({"masks.json": index(objects=7), **OBJECT_PNGS}, "lacks"),
    "frame-missing": ({"masks.json": index(), "obj_001/00000.png": FRAME}, "missing obj_001/00001.png"),
    "frame-wrong-size": (
        {"masks.json": index(), **OBJECT_PNGS, "obj_001/00001.png": png_bytes(np.zeros((5, 4), np.uint8))},
        "expected 4x4",
    ),
    "frame-corrupt": ({"masks.json": index(), **OBJECT_PNGS, "obj_001/00001.png": FRAME[:40]}, "not a readable PNG"),
    "frame-not-png": ({"masks.json": index(), **OBJECT_PNGS, "obj_001/00001.png": b"GIF89a"}, "not a readable PNG"),
    "frame-bomb-header": (
        {"masks.json": index(), **OBJECT_PNGS, "obj_001/00001.png": png_declaring(90000, 90000)},
        "masks.zip",
    ),
    "labels-no-png": ({"readme.txt": "hi"}, "holds no PNG"),
    "labels-sizes-differ": ({"0.png": FRAME, "1.png": png_bytes(np.zeros((5, 4), np.uint8))}, "different sizes"),
    "labels-colour": (
        {"0.png": png_bytes(np.random.default_rng(0).integers(0, 255, (4, 4, 3), dtype=np.uint8))},
        "colour PNG",
    ),
    "labels-corrupt": ({"0.png": FRAME, "1.png": FRAME[:30]}, "not a readable PNG"),
    "labels-bomb-header": ({"0.png": png_declaring(90000, 90000)}, "8100000000 pixels"),
    "labels-over-max-pixels": ({"0.png": png_declaring(9000, 9000)}, "--max-pixels"),
    "labels-bomb-header-second": ({"0.png": FRAME, "1.png": png_declaring(90000, 90000)}, "masks.zip"),
    "labels-16bit-65535-objects": (
        {"0.png": png_bytes(np.arange(256 * 256, dtype=np.uint16).reshape(256, 256))},
        "GiB",
    ),
    "labels-index-objects-garbage": (
        {"masks.json": json.dumps({"layout": "labels", "objects": [{"id": "x"}]}), "0.png": FRAME},
        "malformed object list",
    ),
}


@pytest.mark.parametrize("members, words", list(ZIP_CASES.values()), ids=list(ZIP_CASES))
def test_malformed_png_zip_is_refused(tmp_path, members, words):
    refuse(zip_of(tmp_path / "masks.zip", members), "masks.zip", words)


def test_zip_with_too_many_frames_is_refused(tmp_path):
    members = {f"{i:05d}.png": FRAME for i in range(11)}
    refuse(zip_of(tmp_path / "masks.zip", members), "11 frames", "--max-frames", budget=Budget(max_frames=10))


def test_zip_member_declaring_more_than_the_budget_is_refused(tmp_path):
    path = tmp_path / "masks.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("0.png", FRAME + bytes(40_000_000))
    refuse(path, "0.png", "38.1 MiB", budget=Budget(max_bytes=16 * 2**20))


def test_encrypted_zip_member_is_refused(tmp_path, good_files):
    data = bytearray(good_files["labels.zip"].read_bytes())
    # set the 'encrypted' flag bit in every local and central header
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            data[start + offset] |= 1
            start += 4
    path = tmp_path / "masks.zip"
    path.write_bytes(bytes(data))
    refuse(path, "masks.zip")


# -- label mp4 -------------------------------------------------------------------------------------------------------

TAG_CASES = {
    "ids-not-list": {"ids": 3},
    "names-mismatch": {"names": ["a", "b"]},
    "level-out-of-range": {"levels": [16, 300]},
    "levels-combos-mismatch": {"levels": [16, 100, 235]},
    "combo-unknown-id": {"combos": [[], [9]]},
    "size-larger-than-video": {"height": 64, "width": 64},
    "height-text": {"height": "tall"},
    "width-zero": {"width": 0},
    "levels-missing": {"levels": None},
}


@pytest.mark.parametrize("changes", list(TAG_CASES.values()), ids=list(TAG_CASES))
def test_label_video_with_a_malformed_tag_is_refused(tmp_path, changes):
    path = h264_video(tmp_path / "labels.mp4", 16, 12, frames=2, tag={**label_tag(12, 16), **changes})
    refuse(path, "labels.mp4", "tag")


def test_label_video_declaring_more_than_the_budget_is_refused(tmp_path):
    path = repeated_keyframe_video(tmp_path / "labels.mp4", 64, 64, 20, tag=label_tag(64, 64))
    refuse(path, "20 frames", "--max-frames", budget=Budget(max_frames=16))


def test_label_video_holding_no_video_stream_is_refused(tmp_path):
    path = audio_only_mp4(tmp_path / "labels.mp4")
    refuse(path, "no video stream")


# -- resampling and the types ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "src, dst, words",
    [(1e-9, 8.0, ["--max-frames"]), (8.0, 1e9, ["--max-frames"]), (1e-300, 1e300, ["--max-frames"])],
    ids=["slow-source", "fast-target", "overflow"],
)
def test_resampling_past_the_budget_is_refused(src, dst, words):
    masks = MaskSet(np.ones((1, 3, 4, 4), bool), src)
    with pytest.raises(MaskError) as info:
        resample_maskset(masks, dst)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("fps", [float("nan"), 0.0, -1.0, float("inf"), "x"])
def test_resampling_to_a_bad_rate_is_refused(fps):
    with pytest.raises(MaskError, match="fps"):
        resample_maskset(good_set(), fps)


MASKSET_CASES = {
    "list-not-array": (lambda: MaskSet([[[[True]]]], 8), "numpy array"),
    "3d": (lambda: MaskSet(np.ones((2, 3, 3), bool), 8), "[K, T, H, W]"),
    "float": (lambda: MaskSet(np.ones((1, 2, 3, 3)), 8), "threshold"),
    "zero-height": (lambda: MaskSet(np.ones((1, 2, 0, 3), bool), 8), "1x1 pixels"),
    "fps-nan": (lambda: MaskSet(np.ones((1, 2, 3, 3), bool), float("nan")), "fps"),
    "ids-duplicate": (lambda: MaskSet(np.ones((2, 1, 2, 2), bool), 8, [1, 1]), "unique"),
    "ids-zero": (lambda: MaskSet(np.ones((1, 1, 2, 2), bool), 8, [0]), "start at 1"),
    "names-mismatch": (lambda: MaskSet(np.ones((1, 1, 2, 2), bool), 8, [1], ["a", "b"]), "ids and names"),
}


@pytest.mark.parametrize("build, words", list(MASKSET_CASES.values()), ids=list(MASKSET_CASES))
def test_malformed_mask_set_is_refused(build, words):
    with pytest.raises(MaskError, match=words.replace("[", r"\[").replace("]", r"\]")):
        build()


# -- writing ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FORMATS))
def test_saving_into_an_unwritable_place_is_refused_and_keeps_nothing_partial(tmp_path, name):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(MaskError, match="cannot write"):
        save_masks(good_set(), blocker / name, format=FORMATS[name])


@pytest.mark.parametrize("name", list(FORMATS))
def test_a_failed_save_leaves_the_previous_file_whole(tmp_path, name, monkeypatch):
    path = save_masks(good_set(), tmp_path / name, format=FORMATS[name])
    before = path.read_bytes()
    import mvideo_core.masks as masks_module

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(masks_module, "_png_bytes", boom)
    monkeypatch.setattr(masks_module.np, "savez_compressed", boom)
    monkeypatch.setattr(masks_module.json, "dumps", boom)
    with pytest.raises((MaskError, OSError)):
        save_masks(good_set(), path, format=FORMATS[name])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no partial file left beside it


def test_scoring_refuses_masks_whose_resampled_copy_is_past_the_budget():
    from mvideo_core.budget import use_budget
    from mvideo_core.metrics import MetricError, fit_masks_to_video

    masks = MaskSet(np.ones((100, 2, 64, 64), bool), 1.0)  # 2 s at 1 fps, 100 objects
    with (
        use_budget(Budget(max_bytes=2**20)),
        pytest.raises(MetricError, match="masks resampled to 8 fps needs 6.25 MiB"),
    ):
        fit_masks_to_video(masks, 16, (64, 64), 8.0)
    with pytest.raises(MetricError, match="the masks cover 16 frames at 8 fps but the video has 9"):
        fit_masks_to_video(masks, 9, (64, 64), 8.0)


def flip_bytes(data: bytes, seed: int) -> bytes:
    """`data` with 1-7 bytes set to random values (a damaged download or disk)."""
    rng = np.random.default_rng(seed)
    damaged = bytearray(data)
    for _ in range(rng.integers(1, 8)):
        damaged[rng.integers(0, len(damaged))] = rng.integers(0, 256)
    return bytes(damaged)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("name", list(FORMATS))
def test_damaged_bytes_load_as_masks_or_are_refused(tmp_path, good_files, name, seed, outcome):
    """Flipped bytes never surface as a raw error: a MaskError, or (damage in bytes nothing reads) a valid set."""
    path = tmp_path / name
    path.write_bytes(flip_bytes(good_files[name].read_bytes(), seed))
    try:
        loaded = load_masks(path)
    except MaskError as err:
        assert name in str(err)
        return
    assert loaded.masks.dtype == bool and loaded.masks.ndim == 4 and loaded.num_frames >= 1
    outcome("loaded")


def test_label_video_with_a_damaged_tag_is_refused_not_read_as_one_object(tmp_path, good_files):
    """A tag that no longer parses (a byte that is not UTF-8 inside it) would have made a plain mask video."""
    path = tmp_path / "labels.mp4"
    path.write_bytes(good_files["labels.mp4"].read_bytes().replace(b'"ids": [1, 2]', b'"ids": [1\xf2 2]'))
    refuse(path, "labels.mp4", "tag is damaged")


def test_label_video_with_a_name_that_is_not_utf8_loads_with_the_name_replaced(tmp_path, good_files, outcome):
    outcome("loaded")
    path = tmp_path / "labels.mp4"
    path.write_bytes(good_files["labels.mp4"].read_bytes().replace(b'"names": ["dog"', b'"names": ["\xf2\xa1g"'))
    loaded = load_masks(path)
    assert loaded.names == ["\ufffdg", "ball"] and np.array_equal(loaded.masks, good_set().masks)


def test_label_video_with_an_unknown_codec_is_refused(tmp_path, good_files):
    path = tmp_path / "labels.mp4"
    path.write_bytes(good_files["labels.mp4"].read_bytes().replace(b"avc1", b"zzz9"))
    refuse(path, "labels.mp4", "codec")
