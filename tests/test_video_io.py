"""Video I/O: decoding across containers/codecs, timestamps, rotation, limits, bad inputs, pure resampling/resizing."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    write_clip,
    write_video,
)


def ffmpeg_first_frame(path: Path, height: int, width: int) -> np.ndarray:
    """The first frame as the ffmpeg binary shows it (it applies rotation metadata itself)."""
    cmd = ["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


def noise_video(path: Path, num_frames: int = 40, size=(64, 96), fps: float = 10.0) -> Path:
    """Incompressible frames, so that cutting the file in half leaves half the frames."""
    frames = np.random.default_rng(0).integers(0, 255, (num_frames, *size, 3), dtype=np.uint8)
    return write_video(path, frames, fps, crf=30, preset="ultrafast")


# -- containers and codecs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, codec, pix_fmt",
    [
        ("h264.mp4", "libx264", "yuv420p"),
        ("mpeg4.avi", "mpeg4", "yuv420p"),
        ("mjpeg.mkv", "mjpeg", "yuvj420p"),
        ("vp9.webm", "libvpx-vp9", "yuv420p"),
        ("vp8.webm", "libvpx", "yuv420p"),
        ("anim.gif", "gif", "rgb8"),
    ],
)
def test_decodes_every_frame_of_common_codecs(coded_videos, name, codec, pix_fmt):
    path = coded_videos.write(name, num_frames=20, fps=10, codec=codec, pix_fmt=pix_fmt)
    info = probe_video(path)
    video = read_video(path)
    assert (info.width, info.height, info.rotation, info.has_audio) == (64, 48, 0, False)
    assert info.fps == pytest.approx(10.0)
    assert video.frames.shape == (20, 48, 64, 3) and video.frames.dtype == np.uint8
    assert [coded_videos.index_of(f) for f in video.frames] == list(range(20))
    assert video.frames[0, 4, 4].tolist() == pytest.approx([255, 0, 0], abs=24)  # RGB, not BGR


@pytest.mark.parametrize("fps", [29.97, 12.5])
def test_odd_frame_rates_resample_by_timestamp(coded_videos, fps):
    path = coded_videos.write("odd_fps.mp4", num_frames=40, fps=fps)
    assert probe_video(path).fps == pytest.approx(fps, abs=1e-3)
    video = read_video(path, fps=8)
    expected = resample_indices(40, fps, 8).tolist()
    assert video.fps == 8.0
    assert [coded_videos.index_of(f) for f in video.frames] == expected


def test_variable_frame_rate_picks_frame_on_screen_at_each_output_time(coded_videos):
    times = [0.0, 0.05, 0.4, 0.45, 0.9, 1.3]
    path = coded_videos.write("vfr.mkv", num_frames=6, times=times)
    video = read_video(path, fps=8)
    # output time k/8 shows the last frame whose pts <= k/8; the last frame stays for its duration
    assert [coded_videos.index_of(f) for f in video.frames] == [0, 1, 1, 1, 3, 3, 3, 3, 4, 4, 4, 5]
    assert [coded_videos.index_of(f) for f in read_video(path).frames] == list(range(6))


@pytest.mark.parametrize("name, codec, pix_fmt", [("odd.mp4", "libx264", "yuv444p"), ("odd.avi", "mpeg4", "yuv420p")])
def test_odd_frame_size_decodes_at_its_size(coded_videos, name, codec, pix_fmt):
    path = coded_videos.write(name, num_frames=5, fps=12.5, size=(241, 321), codec=codec, pix_fmt=pix_fmt)
    video = read_video(path)
    assert video.frames.shape == (5, 241, 321, 3)
    assert [coded_videos.index_of(f) for f in video.frames] == list(range(5))


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_matches_ffmpeg_display(coded_videos, rotation):
    path = coded_videos.write(f"rot{rotation}.mp4", num_frames=3, size=(32, 64), rotation=rotation)
    info = probe_video(path)
    frames = read_video(path).frames
    assert info.rotation == rotation % 360
    assert (info.height, info.width) == ((64, 32) if rotation % 180 else (32, 64))
    assert frames.shape[1:3] == (info.height, info.width)
    np.testing.assert_array_equal(frames[0], ffmpeg_first_frame(path, info.height, info.width))


def test_phone_style_hevc_10bit_mov_with_rotation(coded_videos):
    path = coded_videos.write(
        "phone.mov",
        num_frames=6,
        fps=29.97,
        size=(48, 64),
        codec="libx265",
        pix_fmt="yuv420p10le",
        rotation=-90,
        options={"x265-params": "log-level=error", "crf": "12"},
    )
    info = probe_video(path)
    frames = read_video(path).frames
    assert (info.codec, info.rotation, info.width, info.height) == ("hevc", 270, 48, 64)
    assert frames.shape == (6, 64, 48, 3) and frames.dtype == np.uint8
    unrotated = np.rot90(frames, k=-3, axes=(1, 2))  # undo the display rotation to read the frame index
    assert [coded_videos.index_of(f) for f in unrotated] == list(range(6))


def test_rotate_tag_written_by_ffmpeg_binary_is_honoured(coded_videos, tmp_path):
    plain = coded_videos.write("plain.mp4", num_frames=3, size=(32, 64))
    tagged = tmp_path / "tagged.mp4"
    subprocess.run(
        ["ffmpeg", "-y", "-v", "error", "-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(tagged)],
        check=True,
    )
    info = probe_video(tagged)
    frames = read_video(tagged, size=(32, 16), fit="stretch").frames
    assert info.rotation in (90, 270) and (info.height, info.width) == (64, 32)
    full = read_video(tagged).frames[0]
    np.testing.assert_array_equal(full, ffmpeg_first_frame(tagged, 64, 32))
    assert frames.shape == (3, 32, 16, 3)  # size is in the displayed orientation


def test_bigbuckbunny_decodes_with_audio_ignored(bigbuckbunny_path):
    info = probe_video(bigbuckbunny_path)
    assert (info.width, info.height, info.fps, info.num_frames, info.has_audio) == (1280, 720, 25.0, 132, True)
    frames = list(iter_frames(bigbuckbunny_path, fps=8, size=(240, 360)))
    assert len(frames) == len(resample_indices(132, 25.0, 8.0)) == 43
    assert all(f.shape == (240, 360, 3) and f.dtype == np.uint8 for f in frames)
    assert np.std(frames[20]) > 10  # real picture, not a blank frame


def test_streamed_resize_matches_pure_functions(bigbuckbunny_path):
    streamed = read_video(bigbuckbunny_path, fps=8, size=(240, 360), end=2.0).frames
    full = read_video(bigbuckbunny_path, end=2.0)
    pure = resize_frames(resample_fps(full.frames, full.fps, 8), (240, 360))
    assert streamed.shape == pure.shape == (16, 240, 360, 3)
    assert np.abs(streamed.astype(np.int16) - pure).mean() < 2.0  # swscale vs cv2 area filter: same pixels


@pytest.mark.parametrize("fit", ["crop", "letterbox", "stretch"])
def test_decode_resize_fits(coded_videos, fit):
    path = coded_videos.write("fit.mp4", num_frames=2, size=(48, 64))
    frames = read_video(path, size=(64, 64), fit=fit).frames
    assert frames.shape == (2, 64, 64, 3)
    if fit == "letterbox":  # 48x64 scaled to 64 wide is 48 high: 8 black rows above and below
        assert frames[:, :7].max() < 20 and frames[:, -7:].max() < 20
        assert frames[:, 10:54].mean() > 50
    else:
        assert frames[:, :7].mean() > 50


def test_start_end_select_frames_by_time(coded_videos):
    path = coded_videos.write("long.mp4", num_frames=40, fps=10)
    indices = [coded_videos.index_of(f) for f in read_video(path, start=1.0, end=2.0).frames]
    assert indices == list(range(10, 20))
    # start past 1 s seeks to a keyframe first; the frames before start are still dropped
    indices = [coded_videos.index_of(f) for f in read_video(path, start=2.5, end=3.0, fps=4).frames]
    assert indices == [25, 27]


def test_max_side_downscales_a_large_source(coded_videos):
    path = coded_videos.write("big.mp4", num_frames=2, size=(1080, 1920))
    video = read_video(path, max_side=480)
    assert video.frames.shape == (2, 270, 480, 3)
    assert [coded_videos.index_of(f) for f in video.frames] == [0, 1]


# -- limits and bad inputs -------------------------------------------------------------------------------------


def test_huge_resolution_is_refused_before_decoding(coded_videos):
    path = coded_videos.write("huge.mp4", num_frames=2, size=(480, 640))
    with pytest.raises(VideoError, match=r"640x480.*over the limit of 76800 pixels.*downscale it first"):
        read_video(path, budget=Budget(max_pixels=320 * 240))


def test_output_larger_than_memory_limit_is_refused_with_advice(coded_videos):
    path = coded_videos.write("mem.mp4", num_frames=10, size=(48, 64))
    with pytest.raises(VideoError, match="max_side / fps"):
        read_video(path, max_bytes=48 * 64 * 3 * 5)
    assert read_video(path, size=(24, 32), max_bytes=48 * 64 * 3 * 5).num_frames == 10


def test_too_long_video_is_refused_with_advice(coded_videos):
    path = coded_videos.write("long.mp4", num_frames=30, fps=10)
    with pytest.raises(VideoError, match=r"3\.0 s long.*over the 2 s limit; trim it"):
        read_video(path, max_seconds=2)
    assert read_video(path, end=2.0, max_seconds=2).num_frames == 20


def test_text_file_renamed_mp4_is_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are my notes, not a video\n" * 20)
    with pytest.raises(VideoError, match="not a video FFmpeg can read"):
        probe_video(path)
    with pytest.raises(VideoError, match="not a video"):
        read_video(path)
    with pytest.raises(VideoError, match="not a video"):
        iter_frames(path)  # before the first frame is asked for


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        read_video(tmp_path / "empty.mp4")
    with pytest.raises(VideoError, match="no such video file"):
        read_video(tmp_path / "missing.mp4")
    with pytest.raises(VideoError, match="folder"):
        read_video(tmp_path)


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = (np.sin(np.arange(16000) / 10) * 0.3).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(np.repeat(samples, 1, 0), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    with pytest.raises(VideoError, match="no video stream.*audio"):
        read_video(path)


def test_truncated_stream_keeps_decoded_frames_and_reports_where_it_stopped(tmp_path):
    full = noise_video(tmp_path / "full.mp4")  # faststart: the index is at the front, the frames follow
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.warns(VideoDecodeWarning, match=r"decoding stopped at \d+\.\d+ s"):
        video = read_video(cut)
    assert 5 <= video.num_frames < 40
    assert video.stopped_at == pytest.approx((video.num_frames - 1) / 10, abs=0.11)
    assert video.warnings and "re-upload" in video.warnings[0]
    frames = iter_frames(cut)
    with pytest.warns(VideoDecodeWarning):
        count = sum(1 for _ in frames)
    assert count == video.num_frames and frames.stopped_at == video.stopped_at


def test_file_cut_before_any_frame_is_an_error(tmp_path):
    full = noise_video(tmp_path / "full.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[:2000])
    with pytest.raises(VideoError, match="corrupt|not a video"):
        read_video(cut)


def test_range_outside_video_is_an_error(coded_videos):
    path = coded_videos.write("short.mp4", num_frames=10, fps=10)
    with pytest.raises(VideoError, match="no frames in"):
        read_video(path, start=5.0)
    with pytest.raises(VideoError, match="start < end"):
        read_video(path, start=2.0, end=1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"fps": 0}, "positive"), ({"size": (0, 10)}, "positive"), ({"fit": "zoom"}, "fit must be one of")],
)
def test_bad_decode_arguments(coded_videos, kwargs, match):
    path = coded_videos.write("a.mp4", num_frames=2)
    with pytest.raises(VideoError, match=match):
        read_video(path, **kwargs)


# -- encoding --------------------------------------------------------------------------------------------------


def test_write_video_round_trip_is_h264_yuv420p_at_given_fps(tmp_path):
    rng = np.random.default_rng(1)
    frames = np.repeat(np.repeat(rng.integers(0, 255, (6, 6, 8, 3), dtype=np.uint8), 8, 1), 8, 2)
    path = write_video(tmp_path / "out" / "clip.mp4", frames, 29.97)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
    video = read_video(path)
    assert video.frames.shape == frames.shape and video.fps == pytest.approx(29.97, abs=1e-3)
    mse = np.mean((video.frames.astype(float) - frames) ** 2)
    assert 10 * np.log10(255**2 / mse) > 28  # PSNR, dB


def test_write_video_yuv444p_keeps_sharp_colour_edges_that_yuv420p_blurs(tmp_path):
    frames = np.zeros((4, 16, 16, 3), dtype=np.uint8)
    frames[:, ::2] = (230, 30, 30)  # one-pixel red rows: 4:2:0 chroma (2x2 blocks) cannot hold them
    sharp = read_video(write_video(tmp_path / "444.mp4", frames, 8, crf=0, pix_fmt="yuv444p")).frames
    blurred = read_video(write_video(tmp_path / "420.mp4", frames, 8, crf=0)).frames
    with av.open(str(tmp_path / "444.mp4")) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv444p"
    err_444 = np.abs(sharp.astype(int) - frames).max()
    err_420 = np.abs(blurred.astype(int) - frames).max()
    assert err_444 <= 6 and err_420 > 40
    with pytest.raises(VideoError, match="pix_fmt must be"):
        write_video(tmp_path / "bad.mp4", frames, 8, pix_fmt="rgb24")


def test_write_video_pads_odd_sizes_to_even(tmp_path):
    frames = np.zeros((3, 241, 321, 3), dtype=np.uint8)
    frames[:, :, :160] = 200
    path = write_clip(tmp_path / "odd.mp4", frames, 8)
    video = read_video(path)
    assert video.frames.shape == (3, 242, 322, 3)
    assert abs(int(video.frames[0, 120, 100, 0]) - 200) < 8 and video.frames[0, 120, 300].max() < 8
    assert abs(int(video.frames[0, 241, 100, 0]) - 200) < 8  # padding repeats the edge


def test_write_video_copies_audio_cut_to_video_length(tmp_path, bigbuckbunny_path):
    frames = np.zeros((16, 64, 96, 3), dtype=np.uint8)
    path = write_video(tmp_path / "with_audio.mp4", frames, 8, audio_from=bigbuckbunny_path)
    assert probe_video(path).has_audio
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac"
        seconds = sum(f.samples for f in container.decode(audio)) / audio.codec_context.sample_rate
    assert seconds == pytest.approx(2.0, abs=0.1)
    # a source without audio gives a silent file; a missing source is an error before anything is written
    silent_src = write_video(tmp_path / "silent_src.mp4", frames, 8)
    assert not probe_video(write_video(tmp_path / "silent.mp4", frames, 8, audio_from=silent_src)).has_audio
    with pytest.raises(VideoError, match="no such file"):
        write_video(tmp_path / "never.mp4", frames, 8, audio_from=tmp_path / "missing.wav")
    assert not (tmp_path / "never.mp4").exists()


@pytest.mark.parametrize(
    "frames, match",
    [
        (np.zeros((2, 8, 8, 3), dtype=np.float32), "uint8"),
        (np.zeros((2, 8, 8), dtype=np.uint8), r"\[T, H, W, 3\]"),
        (np.zeros((0, 8, 8, 3), dtype=np.uint8), "empty"),
        ([[1, 2]], "numpy array"),
    ],
)
def test_write_video_rejects_bad_frames(tmp_path, frames, match):
    with pytest.raises(VideoError, match=match):
        write_video(tmp_path / "x.mp4", frames, 8)


def test_video_dataclass_validates():
    with pytest.raises(VideoError, match="positive"):
        Video(np.zeros((1, 2, 2, 3), dtype=np.uint8), fps=-1)
    video = Video(np.zeros((4, 2, 6, 3), dtype=np.uint8), fps=8)
    assert (video.num_frames, video.size, video.duration) == (4, (2, 6), 0.5)


# -- pure functions --------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    num_frames=st.integers(1, 200),
    src=st.sampled_from([8.0, 12.5, 23.976, 24.0, 25.0, 29.97, 30.0, 60.0]),
    dst=st.sampled_from([4.0, 8.0, 15.0, 24.0, 30.0]),
)
def test_resample_keeps_duration_and_order(num_frames, src, dst):
    frames = np.arange(num_frames)
    out = resample_fps(frames, src, dst)
    assert len(out) == int(np.ceil(num_frames * dst / src - 1e-6)) or len(out) == 1
    assert abs(len(out) / dst - num_frames / src) <= 1 / dst + 1e-9
    assert (np.diff(out) >= 0).all() and out[0] == 0 and out[-1] <= num_frames - 1
    # each output k shows the frame on screen at time k / dst
    k = np.arange(len(out))
    assert (out / src <= k / dst + 1e-6).all()
    assert ((out + 1) / src > k / dst - 1e-6).all() | (out == num_frames - 1).all()


def test_resample_same_fps_is_identity_and_double_fps_repeats():
    frames = np.arange(10)
    np.testing.assert_array_equal(resample_fps(frames, 8, 8), frames)
    np.testing.assert_array_equal(resample_fps(frames, 8, 16), np.repeat(frames, 2))
    np.testing.assert_array_equal(resample_fps(frames, 24, 8), frames[::3])


def test_trim_by_seconds():
    frames = np.arange(40)
    np.testing.assert_array_equal(trim(frames, 8, 1.0, 2.0), np.arange(8, 16))
    np.testing.assert_array_equal(trim(frames, 8, 4.5), np.arange(36, 40))
    with pytest.raises(VideoError, match="keeps no frames"):
        trim(frames, 8, 6.0, 7.0)
    with pytest.raises(VideoError, match="start < end"):
        trim(frames, 8, 2.0, 1.0)


@settings(max_examples=30, deadline=None)
@given(
    h=st.integers(16, 80),
    w=st.integers(16, 80),
    dh=st.integers(16, 80),
    dw=st.integers(16, 80),
    fit=st.sampled_from(["crop", "letterbox", "stretch"]),
)
def test_resize_frames_and_masks_agree(h, w, dh, dw, fit):
    masks = np.zeros((2, 3, h, w), dtype=bool)
    masks[..., h // 4 : h - h // 4, w // 4 : w - w // 4] = True
    frames = np.repeat(masks[0, :, :, :, None], 3, axis=3).astype(np.uint8) * 255
    out_frames = resize_frames(frames, (dh, dw), fit)
    out_masks = resize_masks(masks, (dh, dw), fit)
    assert out_frames.shape == (3, dh, dw, 3) and out_frames.dtype == np.uint8
    assert out_masks.shape == (2, 3, dh, dw) and out_masks.dtype == bool
    # same geometry: the resized mask covers the bright part of the resized frame (edges may differ by a pixel)
    assert ((out_frames[..., 0] > 127) == out_masks[0]).mean() > 0.9
    assert out_masks[0].sum() > 0


def test_resize_crop_keeps_centre_and_letterbox_pads_black():
    frame = np.zeros((1, 100, 200, 3), dtype=np.uint8)
    frame[:, :, 50:150] = 255  # the centre half
    crop = resize_frames(frame, (50, 50), "crop")
    assert crop.min() == 255
    box = resize_frames(frame, (100, 100), "letterbox")
    assert box[:, :25].max() == 0 and box[:, 75:].max() == 0 and box[:, 40:60, 40:60].min() == 255
    one = resize_frames(frame[0], (20, 40), "stretch")
    assert one.shape == (20, 40, 3)


def test_resize_masks_rejects_non_bool():
    with pytest.raises(VideoError, match="threshold"):
        resize_masks(np.zeros((2, 4, 4), dtype=np.float32), (2, 2))
    with pytest.raises(VideoError, match="fit must be"):
        resize_frames(np.zeros((1, 4, 4, 3), dtype=np.uint8), (2, 2), fit="cover")


def test_iterating_does_not_warn_on_clean_files(coded_videos):
    path = coded_videos.write("clean.mp4", num_frames=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frames = iter_frames(path, fps=4)  # 1.2 s at 4 fps: 0, 0.25, ..., 1.0
        assert len(list(frames)) == 5 and frames.stopped_at is None and frames.error is None
