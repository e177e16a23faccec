"""Build a mask-to-video training set from a folder of videos (paper 4.1, "Training data").

Per video: scene cuts (PySceneDetect) -> segments of at least `min_seconds` -> frames at 8 fps and the training size
-> a grounder on the first frame with the 80 COCO class names -> a tracker through the segment -> masks (COCO RLE),
source offsets, caption and metadata into the shard's manifest. Clips with no subject are dropped, a bad video is
logged with its reason and skipped, and a rerun skips every video (and clip) already finished.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mvideo_core.masks import MaskSet
from mvideo_core.training.captions import CaptionError, CaptionSource
from mvideo_core.training.manifest import (
    ClipRecord,
    ObjectRecord,
    ShardWriter,
    clip_id_for,
    read_manifest,
    read_status,
    shard_of,
)

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg")


class DatasetBuildError(ValueError):
    """The dataset build cannot start (no videos, bad options); the message says what to fix."""


@dataclass
class BuildOptions:
    """How clips are cut and kept. Paper defaults: segments >= 8 s, 8 fps, the 80 COCO classes on frame 0."""

    min_seconds: float = 8.0
    max_seconds: float | None = 16.0  # longer segments are split into pieces of this length (None: keep whole)
    fps: float = 8.0
    height: int = 480
    width: int = 720
    fit: str = "crop"
    scene_threshold: float = 27.0  # PySceneDetect ContentDetector threshold
    classes: Sequence[str] | None = None  # None: the 80 COCO class names
    box_threshold: float = 0.35
    max_objects: int = 3
    min_mask_fraction: float = 0.002  # an object smaller than this share of frame 0 is not a subject
    retry_failed: bool = False

    def __post_init__(self) -> None:
        if self.min_seconds <= 0:
            raise DatasetBuildError(f"min_seconds must be positive, got {self.min_seconds}")
        if self.max_seconds is not None and self.max_seconds < self.min_seconds:
            raise DatasetBuildError(f"max_seconds ({self.max_seconds}) must be >= min_seconds ({self.min_seconds})")
        if self.fps <= 0:
            raise DatasetBuildError(f"fps must be positive, got {self.fps}")
        if self.height % 16 or self.width % 16 or self.height <= 0 or self.width <= 0:
            raise DatasetBuildError(f"size must be positive multiples of 16, got {self.height}x{self.width}")
        if self.max_objects < 1:
            raise DatasetBuildError(f"max_objects must be >= 1, got {self.max_objects}")


@dataclass
class BuildReport:
    """What one shard's run did: videos seen / processed now / skipped as finished, failures with reasons."""

    videos: int = 0
    processed: int = 0
    resumed: int = 0
    clips: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


@dataclass
class Segment:
    """A scene segment of a source video: [start, end) in seconds and in source frames."""

    start: float
    end: float
    start_frame: int

    @property
    def duration(self) -> float:
        return self.end - self.start


def list_videos(source: str | Path) -> list[Path]:
    """Videos under a folder (recursive), or the paths listed in a text file (one per line, # comments)."""
    source = Path(source)
    if source.is_dir():
        videos = sorted(p.resolve() for p in source.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
    elif source.is_file():
        lines = [ln.strip() for ln in source.read_text(encoding="utf-8").splitlines()]
        videos = [(source.parent / ln).resolve() for ln in lines if ln and not ln.startswith("#")]
    else:
        raise DatasetBuildError(f"{source} is neither a folder of videos nor a list file")
    if not videos:
        raise DatasetBuildError(f"no videos found in {source} (looked for {', '.join(VIDEO_EXTENSIONS)})")
    return videos


def find_segments(path: str | Path, options: BuildOptions) -> list[Segment]:
    """Scene cuts with PySceneDetect, then segments >= min_seconds, split into pieces of at most max_seconds."""
    from scenedetect import ContentDetector, detect

    scenes = detect(str(path), ContentDetector(threshold=options.scene_threshold), start_in_scene=True)
    segments = []
    for start, end in scenes:
        t0, t1, f0 = float(start.seconds), float(end.seconds), int(start.frame_num)
        rate = float(start.frame_rate)
        piece = options.max_seconds or (t1 - t0)
        while t1 - t0 >= options.min_seconds - 1e-6:
            length = min(piece, t1 - t0)
            if length < options.min_seconds - 1e-6:
                break
            segments.append(Segment(t0, t0 + length, f0))
            t0 += length
            f0 += int(round(length * rate))
    return segments


class DatasetBuilder:
    """Turns videos into manifest records. `grounder` and `tracker` follow `mvideo_core.extraction`'s protocols."""

    def __init__(self, grounder, tracker, captions: CaptionSource, options: BuildOptions | None = None):
        self.grounder = grounder
        self.tracker = tracker
        self.captions = captions
        self.options = options or BuildOptions()

    @property
    def classes(self) -> list[str]:
        if self.options.classes:
            return list(self.options.classes)
        from mvideo_core.extraction import COCO_CLASSES

        return list(COCO_CLASSES)

    # -- one clip ----------------------------------------------------------------------------------------------
    def extract_masks(self, frames: np.ndarray) -> tuple[MaskSet | None, list[ObjectRecord]]:
        """frames uint8 [T, H, W, 3] -> masks of the subjects found on frame 0 (None when there is none)."""
        opts = self.options
        detections = self.grounder.detect(frames[0], self.classes)
        order = [i for i in np.argsort(-detections.scores) if detections.scores[i] >= opts.box_threshold]
        order = order[: opts.max_objects]
        if not order:
            return None, []
        session = self.tracker.start(frames, opts.fps)
        objects = []
        for k, i in enumerate(order, 1):
            box = detections.boxes[i]
            self.tracker.add_prompt(session, k, 0, box=box, name=detections.labels[i])
            objects.append(ObjectRecord(k, detections.labels[i], float(detections.scores[i]), [float(v) for v in box]))
        maskset = self.tracker.propagate(session, reverse=False, show_progress=False)
        area = maskset.masks[:, 0].reshape(maskset.num_objects, -1).mean(axis=1)
        keep = [k for k in range(maskset.num_objects) if area[k] >= opts.min_mask_fraction]
        if not keep:
            return None, []
        maskset = MaskSet(
            maskset.masks[keep],
            maskset.fps,
            ids=[maskset.ids[k] for k in keep],
            names=[maskset.names[k] for k in keep],
            meta=maskset.meta,
        )
        objects = [o for o in objects if o.id in maskset.ids]
        return maskset, objects

    # -- one video ---------------------------------------------------------------------------------------------
    def process_video(self, path: Path, writer: ShardWriter, finished_clips: set[str], report: BuildReport) -> None:
        """Cut, track and write every clip of one video; raises on a bad video (the caller logs and skips it)."""
        from mvideo_core.masks import save_masks
        from mvideo_core.video_io import probe_video, read_video

        opts = self.options
        if self.captions.captioner is None and self.captions.lookup(path) is None:
            # Fail before the costly work; the message says how to add the caption.
            self.captions.caption(path)
        info = probe_video(path)
        if info.duration < opts.min_seconds:  # nothing to cut: finished, not failed
            report.dropped["video shorter than min_seconds"] = (
                report.dropped.get("video shorter than min_seconds", 0) + 1
            )
            writer.video_done(str(path), [], {"too short": 1})
            return
        segments = find_segments(path, opts)
        if not segments:
            report.dropped["no segment long enough"] = report.dropped.get("no segment long enough", 0) + 1
        clip_ids = []
        for segment in segments:
            clip_id = clip_id_for(path, segment.start_frame)
            if clip_id in finished_clips:
                clip_ids.append(clip_id)
                continue
            video = read_video(
                path, fps=opts.fps, size=(opts.height, opts.width), fit=opts.fit, start=segment.start, end=segment.end
            )
            frames = video.frames  # [T, H, W, 3]
            if len(frames) < 2:
                report.dropped["unreadable segment"] = report.dropped.get("unreadable segment", 0) + 1
                continue
            maskset, objects = self.extract_masks(frames)
            if maskset is None:
                report.dropped["no subject"] = report.dropped.get("no subject", 0) + 1
                continue
            caption = self.captions.caption(path, frames)
            mask_rel = f"masks/{clip_id}.json"
            save_masks(maskset, writer.folder / mask_rel)
            record = ClipRecord(
                clip_id=clip_id,
                source=str(path),
                start=round(segment.start, 6),
                end=round(segment.start + len(frames) / opts.fps, 6),
                fps=opts.fps,
                num_frames=int(len(frames)),
                height=opts.height,
                width=opts.width,
                fit=opts.fit,
                caption=caption,
                masks=mask_rel,
                objects=objects,
                meta={
                    "source_fps": info.fps,
                    "source_size": [info.height, info.width],
                    "segment_end": round(segment.end, 6),
                    "tracker": maskset.meta.get("tracker", ""),
                },
            )
            writer.add_clip(record)
            finished_clips.add(clip_id)
            clip_ids.append(clip_id)
            report.clips += 1
        writer.video_done(str(path), clip_ids)

    # -- a shard -----------------------------------------------------------------------------------------------
    def build(
        self,
        videos: Sequence[str | Path],
        out_dir: str | Path,
        shard_index: int = 0,
        num_shards: int = 1,
        show_progress: bool = True,
    ) -> BuildReport:
        """Process this shard's videos into `out_dir`, skipping finished ones; never stops on a bad video."""
        videos = sorted(Path(v).resolve() for v in videos)
        if not videos:
            raise DatasetBuildError("no videos to process")
        if not self.captions.has_any(videos):
            raise CaptionError(
                "none of the videos has a caption: write a .txt beside each video, pass --captions FILE.csv "
                "(columns video,caption), or pass --captioner MODEL_ID to caption with a vision-language model"
            )
        mine = shard_of(videos, shard_index, num_shards)
        writer = ShardWriter(out_dir, shard_index, num_shards)
        status = read_status(out_dir)
        finished_clips = (
            {r.clip_id for r in read_manifest(out_dir)} if any(Path(out_dir).glob("manifest-*")) else set()
        )
        report = BuildReport(videos=len(mine))
        bar = tqdm(mine, desc=f"build dataset (shard {shard_index + 1}/{num_shards})", disable=not show_progress)
        for path in bar:
            previous = status.get(str(path), {}).get("status")
            if previous == "done" or (previous == "failed" and not self.options.retry_failed):
                report.resumed += 1
                continue
            try:
                self.process_video(path, writer, finished_clips, report)
                report.processed += 1
            except KeyboardInterrupt:
                raise
            except Exception as err:  # a bad video must never stop the run
                reason = f"{type(err).__name__}: {err}".strip()
                logger.warning("skipping %s: %s", path, reason)
                writer.video_failed(str(path), reason)
                report.failed[str(path)] = reason
            bar.set_postfix(clips=report.clips, failed=len(report.failed))
        return report


def shard_from_env() -> tuple[int, int]:
    """(shard index, number of shards) from `accelerate launch`/torchrun's RANK and WORLD_SIZE, else (0, 1)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
