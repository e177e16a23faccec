"""Command-line flags of `python app.py` and the launch sequence: parse flags, build engines, build the studio."""

from __future__ import annotations

import argparse
import logging
import math
import os
from pathlib import Path

from mvideo_core.budget import add_budget_arguments, budget_from_args, set_default_budget


def _env(name: str) -> str | None:
    """Model flags also read MVIDEO_* environment variables (a Hugging Face Space sets them as variables)."""
    return os.environ.get(name) or None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python app.py", description="MVideo Studio: direct motion in generated video."
    )
    net = parser.add_argument_group("server")
    net.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="address to bind (default 127.0.0.1, or $GRADIO_SERVER_NAME as on a Space; 0.0.0.0 to share on a LAN)",
    )
    net.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
        help="port to serve on (default 7860, or $GRADIO_SERVER_PORT)",
    )
    net.add_argument("--share", action="store_true", help="create a public Gradio share link")
    net.add_argument(
        "--concurrency", type=int, default=1, help="jobs run at once per heavy step (default 1: one GPU worker)"
    )
    net.add_argument(
        "--session-timeout",
        type=float,
        default=60.0,
        help="minutes a browser session may stay idle before its memory is freed (its projects stay on disk; "
        "default 60)",
    )
    net.add_argument("--max-upload-mb", type=float, default=200.0, help="largest accepted upload in MB (default 200)")
    net.add_argument(
        "--max-seconds", type=float, default=60.0, help="longest accepted source video in seconds (default 60)"
    )
    net.add_argument(
        "--projects-dir",
        type=Path,
        default=Path("projects"),
        help="where project folders are autosaved (default ./projects); the only folder the server serves",
    )
    models = parser.add_argument_group("models")
    models.add_argument(
        "--base-model",
        default=_env("MVIDEO_BASE_MODEL"),
        help="CogVideoX base: hub id (e.g. THUDM/CogVideoX-5b) or local folder; also $MVIDEO_BASE_MODEL",
    )
    models.add_argument(
        "--mvideo-weights",
        default=_env("MVIDEO_WEIGHTS"),
        help="MVideo weights: a .safetensors file, a folder or hub id; also $MVIDEO_WEIGHTS",
    )
    models.add_argument(
        "--vace-model",
        default=_env("MVIDEO_VACE_MODEL"),
        help="Wan2.1-VACE checkpoint for the VACE engine: hub id or local folder (default "
        "Wan-AI/Wan2.1-VACE-1.3B-diffusers); offered only when it is on this machine (a folder, or in the hub cache: "
        "nothing is downloaded) and a GPU runs it; also $MVIDEO_VACE_MODEL",
    )
    models.add_argument(
        "--sam2", default=_env("MVIDEO_SAM2"), help="SAM2 checkpoint: hub id or local folder (e.g. sam2.1 tiny)"
    )
    models.add_argument(
        "--grounding-dino",
        default=_env("MVIDEO_GROUNDING_DINO"),
        help="Grounding DINO checkpoint: hub id or local folder",
    )
    models.add_argument("--models-dir", type=Path, default=None, help="a folder searched for all checkpoints")
    models.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    models.add_argument("--offload", action="store_true", help="model CPU offload on CUDA (less GPU memory, slower)")
    models.add_argument(
        "--toy-model",
        type=Path,
        default=_env("MVIDEO_TOY_MODEL") or Path("assets") / "toy",
        help="the toy model offered without real weights (default ./assets/toy, shipped in the repository; "
        "also $MVIDEO_TOY_MODEL)",
    )
    models.add_argument(
        "--no-toy",
        action="store_true",
        help="without real weights, do not offer the shipped toy model (--toy-model); Generate then explains",
    )
    models.add_argument(
        "--tiny-random",
        action="store_true",
        help="demo mode: tiny random-weight models on CPU; the whole flow works, generated videos are noise",
    )
    models.add_argument(
        "--no-vace",
        action="store_true",
        help="do not load the VACE engine even where its weights are found (both engines stay loaded otherwise: on a "
        "GPU too small for both, use this or --offload)",
    )
    models.add_argument(
        "--tiny-random-vace",
        action="store_true",
        help="also offer a tiny random-weight Wan2.1-VACE on CPU (noise output) beside the other engines, e.g. the "
        "toy MVideo (--tiny-random offers it too)",
    )
    add_budget_arguments(parser)  # every upload's declared size is checked against these before it loads
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse bad numbers before anything loads, naming the flag."""
    for flag, value in (
        ("--concurrency", args.concurrency),
        ("--session-timeout", args.session_timeout),
        ("--max-upload-mb", args.max_upload_mb),
        ("--max-seconds", args.max_seconds),
    ):
        if not math.isfinite(value) or value <= 0:
            parser.error(f"{flag} must be a positive number, got {value}")
    if not 0 < args.port < 65536:
        parser.error(f"--port must be in 1..65535, got {args.port}")


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    set_default_budget(budget_from_args(args))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the studio runs offline; no telemetry calls
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from app.engines import build_engines
    from app.studio import build_studio, launch_kwargs

    engines = build_engines(args)
    demo = build_studio(engines)
    demo.store.start_reaper(interval=min(60.0, engines.settings.session_timeout / 4))
    demo.queue(default_concurrency_limit=max(1, args.concurrency)).launch(**launch_kwargs(engines))
