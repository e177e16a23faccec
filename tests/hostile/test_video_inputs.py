"""Hostile videos and arguments to mvideo_core.video_io, in process: each refused with a VideoError that names what
is wrong (never a raw PyAV / OpenCV / numpy error), or, for a cut-off file, decoded up to the cut with a warning."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from makers import audio_only_mp4, h264_video

from mvideo_core.budget import Budget
from mvideo_core.video_io import (
    Video,
    VideoDecodeWarning,
    VideoError,
    iter_frames,
    probe_video,
    read_video,
    resample_fps,
    resample_indices,
    resize_frames,
    resize_masks,
    trim,
    truncation_note,
    write_video,
)

pytestmark = pytest.mark.bad_input


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A good 16-frame 24x32 clip at 8 fps (moov at the end, as most cameras write it)."""
    return h264_video(tmp_path_factory.mktemp("clip") / "clip.mp4", 32, 24, frames=16)


@pytest.fixture(scope="module")
def streamable(tmp_path_factory) -> Path:
    """Incompressible frames written by write_video (faststart: the index leads, a cut loses frames only)."""
    frames = np.random.default_rng(0).integers(0, 255, (40, 48, 64, 3), dtype=np.uint8)
    return write_video(tmp_path_factory.mktemp("fast") / "fast.mp4", frames, 10, crf=30, preset="ultrafast")


def refuse(call, *words: str) -> VideoError:
    with pytest.raises(VideoError) as info:
        call()
    for word in words:
        assert word.lower() in str(info.value).lower(), f"{info.value!s} does not name {word!r}"
    return info.value


# -- files --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", ["empty (0 bytes)"]),
        (b"\x00", ["not a video"]),
        (b"hello, this is a text file", ["not a video"]),
        (bytes(np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8)), ["not a video"]),
        (b"\x00\x00\x00\x18ftypisom" + bytes(64), ["v.mp4"]),
    ],
    ids=["empty", "one-byte", "text", "random", "ftyp-only"],
)
@pytest.mark.parametrize("reader", ["probe", "read", "iter"])
def test_file_that_is_not_a_video_is_refused(tmp_path, content, words, reader):
    path = tmp_path / "v.mp4"
    path.write_bytes(content)
    call = {"probe": probe_video, "read": read_video, "iter": iter_frames}[reader]
    refuse(lambda: call(path), *words)


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.9], ids=["5pc", "half", "90pc"])
def test_cut_file_with_its_index_at_the_end_is_refused(tmp_path, clip, fraction):
    data = clip.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: int(len(data) * fraction)])
    refuse(lambda: read_video(path), "cut.mp4")


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9], ids=["30pc", "60pc", "90pc"])
def test_cut_streamable_file_keeps_the_frames_before_the_cut_and_says_so(tmp_path, streamable, fraction, outcome):
    outcome("loaded")
    data = streamable.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.warns(VideoDecodeWarning, match="re-upload"):
        video = read_video(path)
    assert 0 < video.num_frames < 40 and video.stopped_at is not None
    note = truncation_note(video)
    assert note and "cut.mp4" in note and "re-upload" in note


@pytest.mark.parametrize("seed", range(16))
def test_damaged_bytes_decode_or_are_refused(tmp_path, streamable, seed, outcome):
    """Flipped bytes never surface as a raw PyAV / numpy error: a VideoError, or frames (with a warning if cut)."""
    rng = np.random.default_rng(seed)
    damaged = bytearray(streamable.read_bytes())
    for _ in range(rng.integers(1, 8)):
        damaged[rng.integers(0, len(damaged))] = rng.integers(0, 256)
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(damaged))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VideoDecodeWarning)
            video = read_video(path, size=(24, 32))
    except VideoError as err:
        assert "damaged.mp4" in str(err)
        return
    assert video.frames.shape[1:] == (24, 32, 3) and video.num_frames >= 1
    outcome("loaded")


@pytest.mark.parametrize("what", ["missing", "folder"])
def test_missing_path_and_folder_are_refused(tmp_path, what):
    path = tmp_path / "nope.mp4" if what == "missing" else tmp_path
    refuse(lambda: read_video(path), "no such video" if what == "missing" else "is a folder")


def test_audio_only_file_is_refused(tmp_path):
    path = audio_only_mp4(tmp_path / "sound.mp4")
    refuse(lambda: read_video(path), "no video stream")


# -- arguments ---------------------------------------------------------------------------------------------------

NAN, INF = math.nan, math.inf
READ_ARGS = {
    "fps-nan": ({"fps": NAN}, "fps"),
    "fps-zero": ({"fps": 0}, "fps"),
    "fps-negative": ({"fps": -8}, "fps"),
    "fps-inf": ({"fps": INF}, "fps"),
    "fps-text": ({"fps": "fast"}, "fps"),
    "fps-1e9": ({"fps": 1e9}, "--max-frames"),
    "size-zero": ({"size": (0, 5)}, "size"),
    "size-negative": ({"size": (-1, 5)}, "size"),
    "size-fraction": ({"size": (1.5, 2)}, "size"),
    "size-text": ({"size": ("a", 1)}, "size"),
    "size-one-number": ({"size": (5,)}, "size"),
    "size-scalar": ({"size": 7}, "size"),
    "size-huge": ({"size": (100_000, 100_000)}, "--max-pixels"),
    "size-1e300": ({"size": (1e300, 1e300)}, "size"),
    "fit-unknown": ({"fit": "cover"}, "fit must be"),
    "fit-none": ({"fit": None}, "fit must be"),
    "start-nan": ({"start": NAN}, "start"),
    "start-negative": ({"start": -1}, "start"),
    "start-inf": ({"start": INF}, "start"),
    "start-text": ({"start": "soon"}, "start"),
    "end-before-start": ({"start": 1.0, "end": 0.5}, "start < end"),
    "end-nan": ({"end": NAN}, "end"),
    "end-negative": ({"end": -2}, "end"),
    "start-past-the-end": ({"start": 50.0}, "clip.mp4"),
    "max-side-zero": ({"max_side": 0}, "max_side"),
    "max-side-negative": ({"max_side": -3}, "max_side"),
    "max-side-nan": ({"max_side": NAN}, "max_side"),
    "max-side-fraction": ({"max_side": 1.5}, "max_side"),
    "max-side-text": ({"max_side": "big"}, "max_side"),
    "max-seconds-nan": ({"max_seconds": NAN}, "max_seconds"),
    "max-seconds-negative": ({"max_seconds": -1}, "max_seconds"),
    "max-seconds-exceeded": ({"max_seconds": 1}, "over the 1 s limit"),
    "max-bytes-tiny": ({"max_bytes": 100}, "memory limit"),
    "budget-frames": ({"budget": Budget(max_frames=4)}, "16 frames"),
    "budget-pixels": ({"budget": Budget(max_pixels=100)}, "--max-pixels"),
}


@pytest.mark.parametrize("kwargs, words", list(READ_ARGS.values()), ids=list(READ_ARGS))
def test_read_video_bad_argument_is_refused(clip, kwargs, words):
    refuse(lambda: read_video(clip, **kwargs), words)


ITER_ARGS = {
    k: READ_ARGS[k] for k in ("fps-nan", "size-zero", "fit-unknown", "start-nan", "end-before-start", "max-side-nan")
}


@pytest.mark.parametrize("kwargs, words", list(ITER_ARGS.values()), ids=list(ITER_ARGS))
def test_iter_frames_bad_argument_is_refused_before_decoding(clip, kwargs, words):
    refuse(lambda: iter_frames(clip, **kwargs), words)


# -- pure functions -----------------------------------------------------------------------------------------------

FRAMES = np.zeros((4, 6, 8, 3), np.uint8)
PURE = {
    "resample-to-1e9": (lambda: resample_fps(FRAMES, 8, 1e9), "--max-frames"),
    "resample-from-1e-9": (lambda: resample_fps(FRAMES, 1e-9, 8), "--max-frames"),
    "resample-overflow": (lambda: resample_indices(10, 1e-300, 1e300), "--max-frames"),
    "resample-empty": (lambda: resample_fps(FRAMES[:0], 8, 4), "non-empty"),
    "resample-list": (lambda: resample_fps([1, 2], 8, 4), "non-empty"),
    "resample-nan": (lambda: resample_fps(FRAMES, NAN, 4), "src_fps"),
    "resample-bytes": (lambda: resample_fps(FRAMES, 1, 100, budget=Budget(max_bytes=10_000)), "memory limit"),
    "resize-huge": (lambda: resize_frames(FRAMES, (100_000, 100_000)), "--max-pixels"),
    "resize-bytes": (lambda: resize_frames(FRAMES, (400, 400), budget=Budget(max_bytes=2**20)), "memory limit"),
    "resize-2d": (lambda: resize_frames(FRAMES[0, :, :, 0], (4, 4)), "[T, H, W, C]"),
    "resize-fit": (lambda: resize_frames(FRAMES, (4, 4), fit="zoom"), "fit must be"),
    "resize-size-nan": (lambda: resize_frames(FRAMES, (NAN, 4)), "size"),
    "resize-masks-float": (lambda: resize_masks(np.zeros((2, 4, 4)), (2, 2)), "threshold"),
    "resize-masks-huge": (lambda: resize_masks(np.zeros((2, 4, 4), bool), (90_000, 90_000)), "--max-pixels"),
    "resize-masks-1d": (lambda: resize_masks(np.zeros(4, bool), (2, 2)), "[..., H, W]"),
    "trim-nan": (lambda: trim(FRAMES, 8, NAN), "start"),
    "trim-reversed": (lambda: trim(FRAMES, 8, 2.0, 1.0), "start < end"),
    "trim-outside": (lambda: trim(FRAMES, 8, 10.0, 11.0), "keeps no frames"),
    "trim-fps-zero": (lambda: trim(FRAMES, 0), "fps"),
    "video-float-frames": (lambda: Video(FRAMES.astype(np.float32), 8), "uint8"),
    "video-rgba": (lambda: Video(np.zeros((1, 4, 4, 4), np.uint8), 8), "[T, H, W, 3]"),
    "video-empty": (lambda: Video(FRAMES[:0], 8), "empty"),
    "video-list": (lambda: Video([[1]], 8), "numpy array"),
    "video-fps-inf": (lambda: Video(FRAMES, INF), "fps"),
}


@pytest.mark.parametrize("call, words", list(PURE.values()), ids=list(PURE))
def test_pure_function_bad_input_is_refused(call, words):
    refuse(call, words)


# -- writing ------------------------------------------------------------------------------------------------------

WRITE = {
    "fps-zero": ({"fps": 0}, "fps"),
    "fps-nan": ({"fps": NAN}, "fps"),
    "fps-1e-9": ({"fps": 1e-9}, "between 0.01 and 1000"),
    "fps-1e9": ({"fps": 1e9}, "between 0.01 and 1000"),
    "frames-float": ({"frames": FRAMES.astype(np.float64)}, "uint8"),
    "frames-2d": ({"frames": FRAMES[0, :, :, 0]}, "[T, H, W, 3]"),
    "frames-empty": ({"frames": FRAMES[:0]}, "empty"),
    "frames-list": ({"frames": [[0]]}, "numpy array"),
    "pix-fmt": ({"pix_fmt": "rgb48"}, "pix_fmt"),
    "audio-missing": ({"audio_from": "/nonexistent/sound.wav"}, "audio_from"),
}


@pytest.mark.parametrize("kwargs, words", list(WRITE.values()), ids=list(WRITE))
def test_write_video_bad_argument_is_refused(tmp_path, kwargs, words):
    args = {"frames": FRAMES, "fps": 8, **kwargs}
    refuse(lambda: write_video(tmp_path / "out.mp4", args.pop("frames"), args.pop("fps"), **args), words)
    assert not list(tmp_path.iterdir())  # nothing partial left


def test_write_video_into_an_unwritable_place_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    refuse(lambda: write_video(blocker / "out.mp4", FRAMES, 8), "writing", "out.mp4")


def test_failed_write_leaves_the_previous_video_whole(tmp_path):
    path = write_video(tmp_path / "out.mp4", FRAMES, 8)
    before = path.read_bytes()
    (tmp_path / "sound.wav").write_text("not audio")
    refuse(lambda: write_video(path, FRAMES + 50, 8, audio_from=tmp_path / "sound.wav"), "audio")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "sound.wav"]


def test_cut_file_warning_is_given_once_by_read_video(tmp_path, streamable, outcome):
    outcome("loaded")
    data = streamable.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_video(path)
    assert [w.category for w in caught] == [VideoDecodeWarning]
    assert truncation_note(read_video(streamable)) is None  # the whole file: nothing to say


def patched(source: Path, target: Path, old: bytes, new: bytes) -> Path:
    data = source.read_bytes()
    assert data.count(old) >= 1, old
    target.write_bytes(data.replace(old, new))
    return target


def test_invalid_utf8_in_the_metadata_does_not_hide_the_video(tmp_path, outcome):
    outcome("loaded")
    """PyAV raised a raw UnicodeDecodeError opening a file whose tags are not UTF-8; the frames are still good."""
    tagged = h264_video(tmp_path / "tagged.mp4", 32, 24, frames=4, tag={"title": "QQQQQQQQ"})
    path = patched(tagged, tmp_path / "latin.mp4", b"QQQQQQQQ", b"\xf2\xa1QQQQQQ")
    assert read_video(path).num_frames == 4


def test_unknown_codec_is_refused(clip, tmp_path):
    path = patched(clip, tmp_path / "odd.mp4", b"avc1", b"zzz9")
    refuse(lambda: read_video(path), "odd.mp4", "codec")


def test_a_stream_that_changes_size_is_refused_unless_a_size_is_asked_for(tmp_path):
    """Two raw H.264 streams of different sizes, one after the other (a concatenation): numpy's broadcast error."""
    import av

    parts = []
    for width, height in ((32, 24), (64, 48)):
        part = tmp_path / f"{width}.h264"
        with av.open(str(part), "w", format="h264") as container:
            stream = container.add_stream("libx264", rate=8)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for i in range(4):
                frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 100, np.uint8), format="rgb24")
                frame.pts = i
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        parts.append(part.read_bytes())
    path = tmp_path / "joined.h264"
    path.write_bytes(b"".join(parts))
    refuse(lambda: read_video(path), "joined.h264", "changes size mid-stream", "32x24 to 64x48", "size=")
    assert read_video(path, size=(24, 32)).frames.shape == (8, 24, 32, 3)
