"""Build a mask-to-video training set from your videos (paper 4.1).

    python -m mvideo_core.build_dataset VIDEOS OUT [--captions captions.csv | --captioner MODEL_ID]
    accelerate launch -m mvideo_core.build_dataset VIDEOS OUT ...      # one shard per process
    python -m mvideo_core.build_dataset VIDEOS OUT --shard-index 3 --num-shards 8   # one shard per machine/job

VIDEOS is a folder (searched recursively) or a text file listing paths. Captions come from a `.txt` beside each
video, a CSV (`video,caption`), or a vision-language model. Rerunning the same command resumes: finished videos and
clips are skipped; failed videos are retried with --retry-failed. `--merge` writes OUT/manifest.jsonl from all shards.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mvideo_core import cli_args
from mvideo_core.outputs import OutputError, check_writable_dir
from mvideo_core.training.captions import CaptionError, CaptionSource, TransformersCaptioner
from mvideo_core.training.dataset_builder import (
    BuildOptions,
    DatasetBuilder,
    DatasetBuildError,
    list_videos,
    shard_from_env,
)
from mvideo_core.training.manifest import merge_manifests

logger = logging.getLogger("mvideo_core.build_dataset")


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 480x720 (height x width), got {text!r}") from None
    return h, w


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mvideo_core.build_dataset", description=__doc__.split("\n\n")[0])
    p.add_argument("videos", type=Path, help="folder of videos, or a text file with one path per line")
    p.add_argument("out", type=Path, help="dataset folder (manifests, status logs, masks/)")
    p.add_argument("--captions", type=Path, default=None, help="CSV with columns video,caption")
    p.add_argument("--captioner", default=None, help="caption with this transformers image-text-to-text model id")
    p.add_argument(
        "--shard-index", type=cli_args.frame_index, default=None, help="this job's shard (default: RANK or 0)"
    )
    p.add_argument(
        "--num-shards",
        type=cli_args.number(1, integer=True),
        default=None,
        help="number of shards (default: WORLD_SIZE or 1)",
    )
    p.add_argument("--min-seconds", type=cli_args.seconds, default=8.0, help="keep scene segments at least this long")
    p.add_argument(
        "--max-seconds",
        type=cli_args.number(0, 24 * 3600),
        default=16.0,
        help="split longer segments (0: never split)",
    )
    p.add_argument("--fps", type=cli_args.fps, default=8.0)
    p.add_argument("--size", type=_size, default=(480, 720), help="frames and masks size HxW (default 480x720)")
    p.add_argument(
        "--scene-threshold", type=cli_args.number(0, 255), default=27.0, help="PySceneDetect ContentDetector threshold"
    )
    p.add_argument(
        "--grounder",
        default=None,
        help="Grounding DINO folder or hub id (default: found in --models-dir or the Hugging Face cache)",
    )
    p.add_argument(
        "--tracker",
        default="auto",
        help="auto (SAM2 if found, else the classic tracker) | sam2 | classic | a SAM2 folder or hub id",
    )
    p.add_argument("--models-dir", default=None, help="folder searched for Grounding DINO and SAM2 weights")
    p.add_argument("--device", default=None, help="device for the models (default: cuda if available)")
    p.add_argument("--box-threshold", type=cli_args.fraction, default=0.35)
    p.add_argument("--max-objects", type=cli_args.number(1, integer=True), default=3)
    p.add_argument("--retry-failed", action="store_true", help="process again videos that failed before")
    p.add_argument("--merge", action="store_true", help="only merge the shards into OUT/manifest.jsonl")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    if args.merge:
        print(f"merged manifest: {merge_manifests(args.out)}")
        return 0
    env_index, env_shards = shard_from_env()
    shard_index = env_index if args.shard_index is None else args.shard_index
    num_shards = env_shards if args.num_shards is None else args.num_shards
    try:
        options = BuildOptions(
            min_seconds=args.min_seconds,
            max_seconds=args.max_seconds or None,
            fps=args.fps,
            height=args.size[0],
            width=args.size[1],
            scene_threshold=args.scene_threshold,
            box_threshold=args.box_threshold,
            max_objects=args.max_objects,
            retry_failed=args.retry_failed,
        )
        videos = list_videos(args.videos)
        check_writable_dir(args.out, flag="OUT")  # before any model loads or video is read
        if not 0 <= shard_index < num_shards:
            raise DatasetBuildError(f"--shard-index must lie in [0, {num_shards - 1}], got {shard_index}")
        captioner = TransformersCaptioner(args.captioner, device=args.device) if args.captioner else None
        captions = CaptionSource(args.captions, captioner)
        if not captions.has_any(videos):
            raise CaptionError(
                "none of the videos has a caption: write a .txt beside each video, pass --captions FILE.csv "
                "(columns video,caption), or pass --captioner MODEL_ID to caption with a vision-language model"
            )
        from mvideo_core.extraction import GroundingSettings, load_grounder, load_tracker

        # the grounder's own threshold must be the one asked for: at its default (0.35) a lower --box-threshold
        # filtered boxes that had already been dropped
        settings = GroundingSettings(box_threshold=args.box_threshold)
        grounder = load_grounder(args.grounder, models_dir=args.models_dir, device=args.device, settings=settings)
        tracker = load_tracker(args.tracker, models_dir=args.models_dir, device=args.device)
    except (DatasetBuildError, CaptionError, OutputError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    builder = DatasetBuilder(grounder, tracker, captions, options)
    report = builder.build(videos, args.out, shard_index, num_shards, show_progress=not args.no_progress)
    print(
        f"shard {shard_index + 1}/{num_shards}: {report.videos} videos, {report.processed} processed, "
        f"{report.resumed} already finished, {report.clips} clips written, {len(report.failed)} failed"
    )
    for reason, count in sorted(report.dropped.items()):
        print(f"  dropped {count} segment(s): {reason}")
    for path, reason in report.failed.items():
        print(f"  failed {path}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
