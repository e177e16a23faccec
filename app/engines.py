"""Builds the studio's engines (grounder, tracker, generator) from the flags, falling back instead of failing.

The studio must start on a machine with no weights: extraction then uses the weight-free classic tracker and
Generate explains exactly which weights are missing and the flag that points at them.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mvideo_core.clip_spec import COGVIDEOX_CLIP, ClipSpec
from mvideo_core.extraction import Grounder, Tracker
from mvideo_core.settings import GenerationSettings

logger = logging.getLogger(__name__)

TOY_LABEL = "Toy MVideo (tiny CPU-trained demo model: coloured shapes at 64x96, not a real video model)"
# What each engine is, for the Generate tab's engine choice (registry names of mvideo_core.engines, in the order offered).
ENGINE_LABELS = {
    "mvideo": "MVideo: the paper's method, needs trained weights",
    "vace": "VACE (Wan2.1): public weights, layout control",
}
VACE_TINY_STEPS, VACE_GUIDANCE = 2, 5.0  # Wan's pipeline default guidance; 2 steps keep the tiny model quick


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
class EngineChoice:
    """One generation engine as the Generate tab offers it: loaded (`generator`), or missing with the reason and the
    flag that fixes it (`status`); the form's defaults for it."""

    name: str  # the engine's registry name (mvideo_core.engines.ENGINES): "mvideo", "vace"
    label: str  # what it is, shown in the engine choice
    generator: Generator | None
    status: str  # what is loaded, or why nothing is and the flag that fixes it
    default_steps: int = GenerationSettings.num_inference_steps
    default_guidance: float = GenerationSettings.guidance_scale
    noise: bool = False  # tiny random weights: the output is noise

    @property
    def available(self) -> bool:
        return self.generator is not None

    @property
    def spec(self) -> ClipSpec:
        """The loaded model's clip spec (CogVideoX's while nothing is loaded: the page still shows lengths)."""
        return COGVIDEOX_CLIP if self.generator is None else self.generator.spec

    @property
    def size(self) -> tuple[int, int]:
        """The (height, width) it generates at."""
        return self.spec.default_size

    @property
    def short_name(self) -> str:
        """The label's name part, e.g. 'MVideo', 'VACE (Wan2.1)'."""
        return self.label.split(":")[0]

    @property
    def takes_mask_guidance(self) -> bool:
        return bool(getattr(self.generator, "takes_mask_guidance", self.name == "mvideo"))

    def describe(self) -> str:
        """Its clip shape in one line, e.g. 'makes 96x64 at 16 fps in 4 s clips (81 frames, 17 shared ...)'."""
        spec = self.spec
        h, w = self.size
        return (
            f"makes {w}x{h} at {spec.fps:g} fps in {spec.clip_seconds:g} s clips ({spec.clip_frames} frames, "
            f"{spec.overlap_frames} shared with the clip before)"
        )


@dataclass
class Engines:
    """What the studio runs on, with a one-line human status for each (always shown in the UI)."""

    settings: StudioSettings
    tracker: Tracker | None = None
    tracker_status: str = "no tracker"
    grounder: Grounder | None = None
    grounder_status: str = "no text detector"
    generator: Generator | None = None  # the default engine's (the first offered); see app.steps.generate

    generation_status: str = "no generator"
    choices: dict[str, EngineChoice] = field(default_factory=dict)  # every engine, loaded or not, by name

    def offered(self) -> list[EngineChoice]:
        """The engines Generate may use (their weights were found and loaded), the default first."""
        if not self.choices:  # built by hand with one generator (tests, scripts)
            return [self.choice()] if self.generator is not None else []
        return [c for c in self.choices.values() if c.available]

    def choice(self, name: str | None = None) -> EngineChoice:
        """The engine `name` (None: the default, the first offered); a KeyError for a name not known here."""
        if not self.choices:
            if name is not None and name != getattr(self.generator, "name", "mvideo"):
                raise KeyError(name)
            return EngineChoice(
                getattr(self.generator, "name", "mvideo"),
                ENGINE_LABELS["mvideo"],
                self.generator,
                self.generation_status,
                self.settings.default_steps,
                self.settings.default_guidance,
                self.settings.tiny_random,
            )
        if name is None:
            offered = self.offered()
            return offered[0] if offered else next(iter(self.choices.values()))
        return self.choices[name]


def generator_lines(engines: Engines) -> str:
    """One Markdown line per engine: what is loaded, or why not and the flag that fixes it."""
    choices = engines.choices.values() if engines.choices else [engines.choice()]
    names = {"mvideo": "MVideo", "vace": "VACE"}
    return "  \n".join(f"**Generator, {names.get(c.name, c.name)}:** {c.status}" for c in choices)


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
    """The MVideo engine, or None with the exact reason (no GPU, no weights) and the flag to fix it."""
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


def build_vace(args: argparse.Namespace, settings: StudioSettings) -> tuple[Generator | None, str]:
    """The VACE engine when its weights are on this machine (a folder, or the hub id in the local hub cache; nothing
    is downloaded) and a GPU runs it, or the tiny random one (--tiny-random, --tiny-random-vace); else None and why."""
    try:
        from mvideo_core.engines import VaceEngine
        from mvideo_core.vace import vace_weights_found
        from mvideo_core.weights import WeightsError
    except ImportError as err:
        return None, f"VACE is not installed ({err})"
    if getattr(args, "no_vace", False):
        return None, "off (--no-vace)"
    if settings.tiny_random or getattr(args, "tiny_random_vace", False):
        engine = VaceEngine.load_tiny_random()  # recorded as tiny-random-vace: the same settings resume
        engine.pipe.set_progress_bar_config(desc="denoising")
        return engine, "tiny random-weight Wan2.1-VACE on CPU: output is NOISE (demo mode)"
    model = getattr(args, "vace_model", None) or VaceEngine.default_base_model
    if not vace_weights_found(model):
        return None, (
            f"no Wan2.1-VACE weights found for {model} (not a local folder, not in the hub cache; nothing is "
            f"downloaded here): fetch them with `hf download {VaceEngine.default_base_model} --local-dir DIR` and "
            "pass --vace-model DIR (or set MVIDEO_VACE_MODEL); --tiny-random-vace offers a tiny random one"
        )
    if settings.device == "cpu" and not getattr(args, "device", None):
        return None, (
            f"Wan2.1-VACE weights found ({model}) but no CUDA GPU: VACE 1.3B needs about 17 GB of GPU memory (less "
            "with --offload); --device cpu forces the CPU (very slow)"
        )
    import torch

    dtype = torch.bfloat16 if settings.device.startswith("cuda") else torch.float32
    try:
        engine = VaceEngine.from_pretrained(model, torch_dtype=dtype)
    except WeightsError as err:
        return None, str(err).replace("--base-model", "--vace-model")
    if args.offload and settings.device.startswith("cuda"):
        engine.configure_memory(offload="model", vae_tiling=True)
    else:
        engine.to(settings.device)
    return engine, f"Wan2.1-VACE from {model} ({settings.device})"


def build_choices(args: argparse.Namespace, settings: StudioSettings) -> dict[str, EngineChoice]:
    """Every engine the Generate tab knows, loaded where its weights are found, with its status and form defaults.
    The studio's model size, fps and clip length follow the first one loaded (the default)."""
    mvideo, mvideo_status = build_generator(args, settings)  # sets the toy's steps and guidance in `settings`
    choices = {
        "mvideo": EngineChoice(
            "mvideo",
            ENGINE_LABELS["mvideo"] + _variant(mvideo_status, settings.tiny_random, TOY_LABEL),
            mvideo,
            mvideo_status,
            settings.default_steps,
            settings.default_guidance,
            noise=settings.tiny_random,
        )
    }
    vace, vace_status = build_vace(args, settings)
    tiny_vace = settings.tiny_random or bool(getattr(args, "tiny_random_vace", False))
    choices["vace"] = EngineChoice(
        "vace",
        ENGINE_LABELS["vace"] + _variant(vace_status, tiny_vace),
        vace,
        vace_status,
        VACE_TINY_STEPS if tiny_vace else GenerationSettings.num_inference_steps,
        VACE_GUIDANCE,
        noise=tiny_vace,
    )
    default = next((c for c in choices.values() if c.available), None)
    if default is not None:
        use_engine_spec(settings, default.generator)
        settings.default_steps, settings.default_guidance = default.default_steps, default.default_guidance
    return choices


def _variant(status: str, tiny: bool, toy_label: str | None = None) -> str:
    """What is loaded, appended to an engine's label: the toy, tiny random weights, or nothing (real weights)."""
    if tiny:
        return " (tiny random weights: noise)"
    if toy_label is not None and status.startswith(toy_label):
        return " (toy demo model: coloured shapes at 64x96)"
    return ""


def build_engines(args: argparse.Namespace) -> Engines:
    """All engines from the flags; never raises for missing weights (the UI shows each status)."""
    settings = settings_from_args(args)
    settings.projects_dir.mkdir(parents=True, exist_ok=True)
    engines = Engines(settings)
    engines.tracker, engines.tracker_status = build_tracker(args, settings)
    engines.grounder, engines.grounder_status = build_grounder(args, settings)
    engines.choices = build_choices(args, settings)
    default = engines.choice()
    engines.generator = default.generator
    engines.generation_status = default.status
    for what, status in (("tracker", engines.tracker_status), ("grounder", engines.grounder_status)):
        logger.info("%s: %s", what, status)
    for choice in engines.choices.values():
        logger.info("generator %s: %s", choice.name, choice.status)
    return engines
