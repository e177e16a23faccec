"""Builds the studio's engines (grounder, tracker, generator) from the flags, falling back instead of failing.

The studio must start on a machine with no weights: extraction then uses the weight-free classic tracker and
Generate explains exactly which weights are missing and the flag that points at them.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mvideo_core.clip_spec import COGVIDEOX_CLIP, ClipSpec
from mvideo_core.extraction import Grounder, Tracker
from mvideo_core.settings import GenerationSettings

logger = logging.getLogger(__name__)

TOY_LABEL = "Toy MVideo (tiny CPU-trained demo model: coloured shapes at 64x96, not a real video model)"


@dataclass
class StudioSettings:
    """Plain settings the UI and the adapters read; sizes are (height, width)."""

    projects_dir: Path = Path("projects")
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    max_upload_mb: float = 200.0
    max_seconds: float = 60.0
    concurrency: int = 1
    session_timeout: float = 3600.0  # seconds a session may stay idle before its memory is freed
    tiny_random: bool = False
    work_size: tuple[int, int] = (480, 720)  # masks are extracted and edited at this size
    # the generator's clip shape: replaced by the loaded engine's spec (use_engine_spec); CogVideoX's until then
    model_size: tuple[int, int] = COGVIDEOX_CLIP.default_size
    model_fps: float = COGVIDEOX_CLIP.fps
    clip_seconds: float = COGVIDEOX_CLIP.clip_seconds
    default_steps: int = GenerationSettings.num_inference_steps
    default_guidance: float = GenerationSettings.guidance_scale
    device: str = "cpu"

    @property
    def shared(self) -> bool:
        """Served beyond this machine (a LAN address, --share, a Space): projects then open only with their key."""
        return self.share or self.host not in ("127.0.0.1", "localhost", "::1")


class Generator(Protocol):
    """What the studio needs of a loaded generator: a `GenerationEngine` (mvideo_core.engines) that
    `generate_long_video` drives; its clip spec sizes the page and its identity names the model in generation.json."""

    @property
    def spec(self) -> ClipSpec: ...

    @property
    def identity(self) -> dict[str, Any]: ...


@dataclass
class Engines:
    """What the studio runs on, with a one-line human status for each (always shown in the UI)."""

    settings: StudioSettings
    tracker: Tracker | None = None
    tracker_status: str = "no tracker"
    grounder: Grounder | None = None
    grounder_status: str = "no text detector"
    generator: Generator | None = None  # see app.steps.generate

    generation_status: str = "no generator"


def gpu_function(duration: int | None = None) -> Callable[[Callable], Callable]:
    """`spaces.GPU` on a Hugging Face ZeroGPU Space, a no-op elsewhere (the `spaces` package is optional)."""
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return lambda fn: fn
    return spaces.GPU(duration=duration) if duration else spaces.GPU


def _default_device(requested: str | None) -> str:
    if requested:
        return requested
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def settings_from_args(args: argparse.Namespace) -> StudioSettings:
    settings = StudioSettings(
        projects_dir=Path(args.projects_dir),
        host=args.host,
        port=args.port,
        share=args.share,
        max_upload_mb=args.max_upload_mb,
        max_seconds=args.max_seconds,
        concurrency=max(1, args.concurrency),
        session_timeout=60.0 * getattr(args, "session_timeout", 60.0),
        tiny_random=args.tiny_random,
        device=_default_device(args.device),
    )
    if args.tiny_random:
        # Small sizes so that the whole flow, generation included, runs in seconds on a CPU.
        settings.work_size = (240, 360)
        settings.model_size = (64, 96)
        settings.default_steps = 2
        settings.device = "cpu"
    return settings


def build_tracker(args: argparse.Namespace, settings: StudioSettings) -> tuple[Any, str]:
    """SAM2 when its weights are found, else the weight-free classic tracker; the status says which and why."""
    try:
        from mvideo_core.extraction import load_tracker
    except ImportError as err:
        return None, f"mask extraction is not installed ({err})"
    notes: list[str] = []
    try:
        tracker = load_tracker(
            "auto",
            sam2=getattr(args, "sam2", None),
            models_dir=getattr(args, "models_dir", None),
            device=settings.device,
            on_fallback=notes.append,
        )
    except Exception as err:  # noqa: BLE001 - a broken SAM2 checkpoint must not stop the studio
        from mvideo_core.extraction import ClassicTracker

        tracker, notes = ClassicTracker(), [str(err)]
    status = describe_tracker(tracker)
    return tracker, f"{status}. {notes[0]}" if notes else status


def describe_tracker(tracker: Any) -> str:
    for attr in ("description", "status", "name"):
        value = getattr(tracker, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(tracker).__name__


def build_grounder(args: argparse.Namespace, settings: StudioSettings) -> tuple[Any, str]:
    """Grounding DINO when its weights are given or found; otherwise text detection is off (clicks still work)."""
    off = (
        "off: no Grounding DINO weights (pass --grounding-dino IDEA-Research/grounding-dino-tiny or a local folder); "
        "click on objects instead"
    )
    try:
        from mvideo_core.extraction import load_grounder
    except ImportError:
        load_grounder = None
    try:
        if load_grounder is not None:
            grounder = load_grounder(
                getattr(args, "grounding_dino", None),
                models_dir=getattr(args, "models_dir", None),
                device=settings.device,
                tiny_random=settings.tiny_random,
            )
        elif getattr(args, "grounding_dino", None):
            from mvideo_core.extraction.grounding import GroundingDinoDetector

            grounder = GroundingDinoDetector(args.grounding_dino, device=settings.device)
        else:
            return None, off
    except ImportError as err:
        return None, f"off: text detection is not installed ({err})"
    except Exception as err:  # noqa: BLE001 - missing weights: the studio still starts, clicks and boxes work
        return None, f"off: {err}"
    if settings.tiny_random:
        return grounder, "tiny random-weight Grounding DINO: its boxes are random (demo mode); click on objects"
    if grounder is None:
        return None, off
    return grounder, f"Grounding DINO ({getattr(grounder, 'source', 'loaded')})"


def use_engine_spec(settings: StudioSettings, engine: Generator) -> Generator:
    """The studio's model size, frame rate and clip length from the loaded engine's clip spec."""
    spec = engine.spec
    settings.model_size, settings.model_fps, settings.clip_seconds = spec.default_size, spec.fps, spec.clip_seconds
    return engine


def build_generator(args: argparse.Namespace, settings: StudioSettings) -> tuple[Generator | None, str]:
    """The generation engine, or None with the exact reason (no GPU, no weights) and the flag to fix it."""
    try:
        from mvideo_core.engines import MVideoEngine
        from mvideo_core.weights import WeightsError
    except ImportError as err:
        return None, f"generation is not installed ({err})"
    if settings.tiny_random:
        engine = MVideoEngine.load_tiny_random()  # loaded from a folder removed at once; recorded as tiny-random-2b
        engine.pipe.set_progress_bar_config(desc="denoising")
        return use_engine_spec(
            settings, engine
        ), "tiny random-weight model on CPU: output is NOISE (demo mode, --tiny-random)"
    no_weights = not args.base_model and not args.mvideo_weights
    no_gpu = settings.device == "cpu" and not getattr(args, "device", None)
    if no_weights or no_gpu:
        why = (
            "no CUDA GPU found: real CogVideoX generation needs one (about 20 GB of GPU memory with --offload); "
            "run on a GPU machine with --base-model and --mvideo-weights, or force the CPU with --device cpu"
            if no_gpu
            else "no weights given: pass --base-model (CogVideoX hub id or folder) and --mvideo-weights"
        )
        toy_dir = getattr(args, "toy_model", None)
        toy = None if getattr(args, "no_toy", False) or toy_dir is None else _toy_engine(settings, Path(toy_dir))
        if toy is not None:
            return toy, f"{TOY_LABEL}. For real videos: {why}"
        if no_gpu:
            return None, f"{why}, or try --tiny-random"
    try:
        engine = MVideoEngine.from_pretrained(args.base_model, args.mvideo_weights, device=settings.device)
    except WeightsError as err:
        return None, str(err)
    if args.offload and settings.device.startswith("cuda"):
        engine.configure_memory(offload="model", vae_slicing=True, vae_tiling=True)
    status = f"MVideo on {args.base_model} with {args.mvideo_weights} ({settings.device})"
    return use_engine_spec(settings, engine), status


def _toy_engine(settings: StudioSettings, folder: Path) -> Generator | None:
    """The toy MVideo shipped in `folder` (assets/toy: CPU-trained, 64x96), loaded like any CogVideoX + MVideo
    weights; its toy_config.json gives the steps and guidance it was measured with. Its record names the base model
    by content and keeps the folder the weights were trained on as "trained_on"."""
    try:
        from mvideo_core.engines import MVideoEngine
        from mvideo_core.weights import WeightsError
    except ImportError:
        return None
    base, weights = folder / "base_model", folder / "mvideo.safetensors"
    if not (base / "model_index.json").is_file() or not weights.is_file():
        logger.info("no toy model in %s (base_model/ and mvideo.safetensors expected)", folder)
        return None
    try:
        engine = MVideoEngine.from_pretrained(base, weights, device="cpu")
    except (WeightsError, OSError) as err:
        logger.info("no toy model: %s", err)
        return None
    engine.pipe.mvideo_metadata["label"] = TOY_LABEL
    try:
        config = json.loads((folder / "toy_config.json").read_text())
        settings.default_steps = int(config["inference_steps"])
        settings.default_guidance = float(config["guidance_scale"])
    except (OSError, ValueError, KeyError, TypeError):
        settings.default_steps = 20
    return use_engine_spec(settings, engine)


def build_engines(args: argparse.Namespace) -> Engines:
    """All engines from the flags; never raises for missing weights (the UI shows each status)."""
    settings = settings_from_args(args)
    settings.projects_dir.mkdir(parents=True, exist_ok=True)
    engines = Engines(settings)
    engines.tracker, engines.tracker_status = build_tracker(args, settings)
    engines.grounder, engines.grounder_status = build_grounder(args, settings)
    engines.generator, engines.generation_status = build_generator(args, settings)
    for what, status in (
        ("tracker", engines.tracker_status),
        ("grounder", engines.grounder_status),
        ("generator", engines.generation_status),
    ):
        logger.info("%s: %s", what, status)
    return engines
