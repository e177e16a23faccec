"""Command line mask extraction: a video + text / boxes / clicks -> mask files and an overlay preview video.

python -m mvideo_core.extract VIDEO --text "person . dog" [--box x0,y0,x1,y1@frame] [--click x,y,+@frame]
    --out DIR --format png|npz|mp4|coco
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

from mvideo_core import cli_args
from mvideo_core.budget import add_budget_arguments, budget_from_args, use_budget
from mvideo_core.extraction.api import extract_masks, load_grounder, load_tracker, parse_box, parse_click
from mvideo_core.extraction.base import ExtractionCancelled, ExtractionError, state_counts, state_report
from mvideo_core.extraction.discovery import WeightsNotFound
from mvideo_core.extraction.grounding import GroundingSettings
from mvideo_core.masks import MaskError, save_masks, write_overlay_video
from mvideo_core.outputs import OutputError, check_writable_dir, write_text_atomic
from mvideo_core.video_io import VideoError

FORMAT_SUFFIX = {"png": ".zip", "npz": ".npz", "mp4": ".mp4", "coco": ".json"}
logger = logging.getLogger("mvideo_core.extract")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mvideo_core.extract", description=__doc__.split("\n")[0])
    p.add_argument("video", type=Path, help="input video file")
    p.add_argument("--text", default=None, help='objects to find, separated by dots: "person . dog"')
    p.add_argument(
        "--text-frame",
        type=cli_args.frame_index,
        action="append",
        default=None,
        help="frame(s) for --text (default 0)",
    )
    p.add_argument("--box", action="append", default=[], help="x0,y0,x1,y1@frame[:id] in pixels (repeatable)")
    p.add_argument("--click", action="append", default=[], help="x,y,+@frame[:id] or x,y,-@frame[:id] (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--format", choices=sorted(FORMAT_SUFFIX), default="png", help="mask file format")
    p.add_argument("--fps", type=cli_args.fps, default=None, help="resample the video to this fps first")
    p.add_argument("--max-seconds", type=cli_args.seconds, default=None, help="refuse videos longer than this")
    p.add_argument("--tracker", default="auto", help="auto | sam2 | classic (auto: SAM2 when found, else classic)")
    p.add_argument("--backend", choices=["transformers", "sam2-package"], default="transformers")
    p.add_argument("--sam2", default=None, help="SAM2 checkpoint: folder, hub id, or Meta .pt (sam2-package)")
    p.add_argument("--grounding-dino", default=None, help="Grounding DINO checkpoint: folder or hub id")
    p.add_argument("--models-dir", type=Path, default=None, help="folder searched for all checkpoints")
    p.add_argument("--box-threshold", type=cli_args.fraction, default=0.35)
    p.add_argument("--text-threshold", type=cli_args.fraction, default=0.25)
    p.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    p.add_argument("--no-overlay", action="store_true", help="skip the overlay preview video")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_budget_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        # 1. Check the prompts and the output folder before any decoding or model loading
        boxes = [parse_box(b) for b in args.box]
        clicks = [parse_click(c) for c in args.click]
        if args.text is None and not boxes and not clicks:
            raise ExtractionError("nothing to segment: give --text, --box or --click")
        check_writable_dir(args.out)
        # 2. Engines (fall back to the classic tracker without SAM2 weights)
        tracker = load_tracker(
            args.tracker, sam2=args.sam2, models_dir=args.models_dir, device=args.device, backend=args.backend
        )
        grounder = None
        if args.text is not None:
            try:
                grounder = load_grounder(
                    args.grounding_dino,
                    models_dir=args.models_dir,
                    device=args.device,
                    settings=GroundingSettings(args.box_threshold, args.text_threshold),
                )
            except WeightsNotFound as err:
                raise ExtractionError(
                    f"--text needs Grounding DINO: {err}. Boxes (--box) and clicks (--click) work without it"
                ) from None
        # 3. Decode at the tracker's working size (masks come back at the video's), segment, track
        from mvideo_core.video_io import VideoDecodeWarning, probe_video, read_video, truncation_note

        try:
            with use_budget(budget_from_args(args)), warnings.catch_warnings():
                warnings.simplefilter("ignore", VideoDecodeWarning)  # said once, below, as a plain warning
                info = probe_video(args.video)
                video = read_video(
                    args.video, fps=args.fps, max_seconds=args.max_seconds, max_side=tracker.input_max_side
                )
        except (VideoError, OSError) as err:
            raise ExtractionError(f"cannot read {args.video}: {err}") from None
        if note := truncation_note(video):
            print(f"warning: {note}", file=sys.stderr)
        result = extract_masks(
            video,
            text=args.text,
            text_frames=args.text_frame or [0],
            boxes=boxes,
            clicks=clicks,
            tracker=tracker,
            grounder=grounder,
            mask_size=(info.height, info.width),
            show_progress=not args.quiet,
        )
        # 4. Write masks, overlay preview and a summary (each file appears whole or not at all)
        mask_path = save_masks(result.masks, args.out / f"masks{FORMAT_SUFFIX[args.format]}", format=args.format)
        del video  # the working-size frames: the overlay decodes the video again, a frame at a time
        overlay = None if args.no_overlay else _write_overlay(args, result.masks)
        objects = result.masks.meta.get("frame_states", [])
        summary = {
            "video": str(args.video),
            "frames": result.masks.num_frames,
            "fps": result.masks.fps,
            "size": list(result.masks.size),
            "objects": objects or [{"id": i, "name": n} for i, n in zip(result.masks.ids, result.masks.names)],
            "tracker": result.masks.meta.get("tracker"),
            "masks": str(mask_path),
            "overlay": str(overlay) if overlay else None,
            "messages": result.messages,
        }
        write_text_atomic(args.out / "extraction.json", json.dumps(summary, indent=2) + "\n")
    except (ExtractionError, MaskError, OutputError, VideoError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except MemoryError:
        print(
            "error: ran out of memory; lower --max-memory-gb / --max-frames so such inputs are refused first, or "
            "pass --fps / --max-seconds",
            file=sys.stderr,
        )
        return 2
    except ExtractionCancelled as err:
        print(f"cancelled: {err}", file=sys.stderr)
        return 130
    for message in result.messages:
        if message == getattr(tracker, "status", None):
            continue  # already logged when the tracker was chosen
        print(f"note: {message}", file=sys.stderr)
    print(f"{len(result.masks.ids)} object(s), {result.masks.num_frames} frames -> {mask_path}")
    for obj in objects:
        counts = state_counts(obj["frames"])
        print(f"  {obj['name']}: " + ", ".join(f"{n} {state}" for state, n in counts.items() if n))
        for line in state_report(obj["name"], obj["frames"]):
            print(f"  {line}")
    return 0


def _write_overlay(args: argparse.Namespace, masks) -> Path:
    """The overlay preview at the video's size, decoded, drawn and encoded one frame at a time."""
    from mvideo_core.video_io import iter_frames

    frames = iter_frames(args.video, fps=args.fps)
    try:
        return write_overlay_video(args.out / "overlay.mp4", frames, masks)
    finally:
        frames.close()


if __name__ == "__main__":
    sys.exit(main())
