"""Score generated videos against their conditioning masks: mask mIoU S_m (paper eq. 3).

    python -m mvideo_core.evaluate --videos outputs/ --masks conditions/ [--tracker auto] [--out scores.json]
    python -m mvideo_core.evaluate --pairs pairs.csv          # columns: video,masks

Videos and masks are paired by file stem (`clip7.mp4` <-> `clip7.npz`, `clip7.masks.zip`, `clip7_masks.json`, ...).
Works on any model's outputs; a pair that cannot be scored is reported with its reason and the rest still run.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

from tqdm.auto import tqdm

from mvideo_core import cli_args
from mvideo_core.budget import add_budget_arguments, budget_from_args, use_budget
from mvideo_core.metrics import ClipScore, MaskAlignment, aggregate, score_clip
from mvideo_core.outputs import OutputError, check_writable_file, write_text_atomic

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif")
MASK_SUFFIXES = (".npz", ".zip", ".json", ".mp4", ".mkv", ".webm")


def find_pairs(videos_dir: Path, masks_dir: Path) -> list[tuple[Path, Path]]:
    """(video, masks) pairs matched by stem; a masks file may add `.masks`, `_masks` or `-masks` to the stem."""
    if not videos_dir.is_dir():
        raise SystemExit(f"error: --videos {videos_dir} is not a folder")
    if not masks_dir.is_dir():
        raise SystemExit(f"error: --masks {masks_dir} is not a folder")
    videos = sorted(p for p in videos_dir.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    candidates = [p for p in masks_dir.iterdir() if p.suffix.lower() in MASK_SUFFIXES]
    pairs = []
    for video in videos:
        names = {f"{video.stem}{sep}" for sep in ("", ".masks", "_masks", "-masks")}
        match = [p for p in candidates if p.resolve() != video.resolve() and p.name[: -len(p.suffix)] in names]
        if match:
            pairs.append((video, sorted(match, key=lambda p: MASK_SUFFIXES.index(p.suffix.lower()))[0]))
        else:
            logger.warning("no masks found for %s in %s", video.name, masks_dir)
    if not pairs:
        raise SystemExit(
            f"error: no (video, masks) pairs: for each video in {videos_dir} put masks with the same stem in "
            f"{masks_dir} ({', '.join(MASK_SUFFIXES)}), or give --pairs FILE.csv"
        )
    return pairs


def read_pairs(path: Path) -> list[tuple[Path, Path]]:
    """A CSV with header `video,masks`; relative paths are relative to the CSV."""
    if not path.is_file():
        raise SystemExit(f"error: --pairs {path} does not exist")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"video", "masks"} <= {f.strip() for f in reader.fieldnames}:
            raise SystemExit(f"error: --pairs {path} needs a header `video,masks`, got {reader.fieldnames}")
        pairs = [(path.parent / row["video"].strip(), path.parent / row["masks"].strip()) for row in reader]
    if not pairs:
        raise SystemExit(f"error: --pairs {path} lists no pairs")
    return pairs


def evaluate_pairs(pairs: list[tuple[Path, Path]], tracker, fps: float | None = None) -> MaskAlignment:
    """Score every pair; a pair that fails (unreadable, mismatched) is recorded with its reason, not fatal."""
    from mvideo_core.masks import load_masks
    from mvideo_core.video_io import read_video

    clips: list[ClipScore] = []
    failed: dict[str, str] = {}
    for video_path, masks_path in tqdm(pairs, desc="mask mIoU"):
        try:
            video = read_video(video_path, fps=fps)
            masks = load_masks(masks_path)
            clips.append(score_clip(video.frames, masks, tracker, fps=video.fps, name=video_path.name))
        except KeyboardInterrupt:
            raise
        except Exception as err:
            failed[video_path.name] = f"{type(err).__name__}: {err}"
            logger.warning("cannot score %s: %s", video_path.name, failed[video_path.name])
    return aggregate(clips, failed)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mvideo_core.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=Path, help="folder of generated videos")
    parser.add_argument("--masks", type=Path, help="folder of conditioning masks (default: the --videos folder)")
    parser.add_argument("--pairs", type=Path, help="CSV with columns video,masks (instead of --videos/--masks)")
    parser.add_argument(
        "--tracker",
        default="auto",
        help="auto (SAM2 if its weights are here, else classic), sam2, classic, or a SAM2 hub id / local folder",
    )
    parser.add_argument("--device", default=None, help="device of the SAM2 tracker (default: cuda if available)")
    parser.add_argument("--fps", type=cli_args.fps, default=None, help="read videos at this fps (default: their own)")
    parser.add_argument("--out", type=Path, default=None, help="write the full report (per clip, per frame) as JSON")
    add_budget_arguments(parser)
    args = parser.parse_args(argv)
    if args.pairs is None and args.videos is None:
        parser.error("give --videos (and --masks) or --pairs")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    from mvideo_core.extraction import ExtractionError, load_tracker

    try:
        if args.out:  # before any scoring: a report that cannot be written is known now, not after the work
            check_writable_file(args.out, "--out")
        pairs = read_pairs(args.pairs) if args.pairs else find_pairs(args.videos, args.masks or args.videos)
        tracker = load_tracker(args.tracker, device=args.device)
    except (OutputError, ExtractionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logger.info("tracker: %s", getattr(tracker, "description", "") or getattr(tracker, "name", type(tracker)))
    with use_budget(budget_from_args(args)):
        result = evaluate_pairs(pairs, tracker, fps=args.fps)
    for clip in result.clips:
        print(f"{clip.name}: mIoU {clip.miou:.4f} over {clip.frames_scored} frames")
    for name, reason in result.failed.items():
        print(f"{name}: not scored ({reason})")
    print(
        f"S_m = {100 * result.miou:.2f} (mean IoU {result.miou:.4f} over {result.frames_scored} frames, "
        f"{len(result.clips)} clips)"
    )
    if args.out:
        try:
            write_text_atomic(args.out, json.dumps(result.to_dict(), indent=2) + "\n")
        except OSError as err:
            print(
                f"error: cannot write --out {args.out} ({err.strerror or err}); the scores are printed above",
                file=sys.stderr,
            )
            return 2
    return 0 if result.clips else 1


if __name__ == "__main__":
    sys.exit(main())
