"""Hostile files made on the fly: small on disk, large in what they declare (sizes, frame counts, rates)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

LABEL_TAG = "mvideo-label-video"


def h264_video(
    path: Path, width: int, height: int, frames: int = 8, fps: float = 8.0, tag: dict | None = None, noise: bool = True
) -> Path:
    """An H.264 mp4 of `frames` frames (yuv444p, so odd and 1-pixel sizes encode); `tag` goes in the comment."""
    with av.open(str(path), "w", format="mp4") as container:
        if tag is not None:
            container.metadata["comment"] = json.dumps(tag)
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        stream.options = {"preset": "ultrafast"}
        rng = np.random.default_rng(0)
        for i in range(frames):
            image = (
                rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
                if noise
                else np.full((height, width, 3), 16, dtype=np.uint8)
            )
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def repeated_keyframe_video(path: Path, width: int, height: int, frames: int, tag: dict | None = None) -> Path:
    """`frames` copies of one encoded flat keyframe: an 8000x8000 x 72 video costs one encode and a few MB."""
    with av.open(str(path), "w", format="mp4") as container:
        if tag is not None:
            container.metadata["comment"] = json.dumps(tag)
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "51"}
        yuv = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
        yuv[:height] = 16
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = 0
        packets = list(stream.encode(frame)) + list(stream.encode(None))
        data = b"".join(bytes(p) for p in packets)
        for i in range(frames):
            packet = av.Packet(data)
            packet.stream = stream
            packet.pts = packet.dts = i
            packet.time_base = Fraction(1, 8)
            packet.is_keyframe = True
            container.mux(packet)
    return path


def audio_only_mp4(path: Path) -> Path:
    """An mp4 holding one AAC track and no video stream."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def label_tag(height: int, width: int, ids=(1,), **overrides) -> dict:
    """The comment tag of a label video (`mvideo_core.masks` format), with fields overridden."""
    ids = list(ids)
    tag = {
        "format": LABEL_TAG,
        "version": 1,
        "fps": 8.0,
        "height": height,
        "width": width,
        "ids": ids,
        "names": [f"object {i}" for i in ids],
        "levels": [16, 235],
        "combos": [[], ids[:1]],
        "meta": {},
    }
    tag.update(overrides)
    return tag


def coco_json(path: Path, frames: object, height: object, width: object, objects: int = 1, **video) -> Path:
    """A YouTube-VIS style json: one video declaring `frames` x `height` x `width`, objects with empty frames."""
    count = frames if isinstance(frames, int) and 0 <= frames <= 10_000 else 1
    doc = {
        "videos": [{"id": 1, "length": frames, "height": height, "width": width, **video}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": k + 1, "video_id": 1, "category_id": 1, "segmentations": [None] * count} for k in range(objects)
        ],
    }
    path.write_text(json.dumps(doc))
    return path
