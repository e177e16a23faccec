"""`GenerationSettings`: every choice that shapes a generated video, built once (CLI or studio), checked once.

The object is passed down unchanged to the engine and recorded as it is in `generation.json`; adding a setting means
adding a field here, its widget or flag, and its use. Field names follow diffusers' (`num_inference_steps`,
`guidance_scale`, ...). A bad value raises `SettingsError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mvideo_core.budget import Budget, resolve
from mvideo_core.clip_spec import MASK_POLICIES, ClipSpec
from mvideo_core.video_io import FITS

MAX_STEPS = 1000  # the schedulers' training timesteps
GUIDANCE_RANGE = (0.0, 30.0)
MASK_GUIDANCE_RANGE = (1.0, 10.0)
MAX_SEED = 2**63 - 1


class SettingsError(ValueError):
    """A generation setting is out of range; `field` names it (the CLI maps it to its flag, the studio to a widget)."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"{field} {problem}")


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number(name: str, value: Any, low: float, high: float, hint: str = "") -> float:
    if not _is_real(value) or not math.isfinite(value) or not low <= value <= high:
        raise SettingsError(name, f"has to be a finite number in {low:g}..{high:g}{hint}, got {value!r}")
    return float(value)


class _TooLong(SettingsError):
    """The budget's refusal of a length (Budget.check raises its `error` class with one message)."""

    def __init__(self, message: str):
        super().__init__("seconds", f"is too long: {message}")


@dataclass(frozen=True)
class GenerationPlan:
    """What the settings mean for one engine: clip count and frame size (height, width) resolved from its spec."""

    num_clips: int
    height: int
    width: int


@dataclass(frozen=True)
class GenerationSettings:
    """One long video's settings. Sizes default to the engine's (`None`); seconds must fit its clip length."""

    prompt: str
    negative_prompt: str | None = None
    seconds: float = 16
    seed: int = 0
    num_inference_steps: int = 50
    guidance_scale: float = 6.0  # classifier-free guidance on the text; <= 1 turns it off
    mask_guidance_scale: float = 1.0  # push towards the masks; 1 = off
    use_dynamic_cfg: bool = True
    height: int | None = None
    width: int | None = None
    condition_size: tuple[int, int] | None = None  # the motion condition's size (MVideo); None = paper proportions
    start_image: np.ndarray | None = field(default=None, compare=False, repr=False)  # uint8 [H, W, 3]
    color_match: bool = False
    mask_policy: str = "hold"  # masks shorter than the video: see clip_spec.MASK_POLICY_HELP
    mask_fit: str = "crop"  # how masks of another aspect ratio are fitted (video_io.FITS)

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise SettingsError(
                "prompt",
                f"is empty ({self.prompt!r}): write a prompt that describes the video to generate, e.g. 'an "
                "astronaut doing a backflip on the moon'",
            )
        if self.negative_prompt is not None and not isinstance(self.negative_prompt, str):
            raise SettingsError(
                "negative_prompt", f"has to be text or None, got {type(self.negative_prompt).__name__}"
            )
        if not _is_real(self.seconds) or not math.isfinite(self.seconds) or self.seconds <= 0:
            raise SettingsError("seconds", f"has to be a positive number of seconds, got {self.seconds!r}")
        if not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED:
            raise SettingsError("seed", f"has to be a whole number in 0..{MAX_SEED}, got {self.seed!r}")
        if not _is_int(self.num_inference_steps) or not 1 <= self.num_inference_steps <= MAX_STEPS:
            raise SettingsError(
                "num_inference_steps", f"has to be a whole number in 1..{MAX_STEPS}, got {self.num_inference_steps!r}"
            )
        _number("guidance_scale", self.guidance_scale, *GUIDANCE_RANGE, " (6 is typical; 0 or 1 turns it off)")
        _number(
            "mask_guidance_scale", self.mask_guidance_scale, *MASK_GUIDANCE_RANGE, " (1 = off, 2 = a moderate push)"
        )
        for name in ("use_dynamic_cfg", "color_match"):
            if not isinstance(getattr(self, name), bool):
                raise SettingsError(name, f"has to be True or False, got {getattr(self, name)!r}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value <= 0):
                raise SettingsError(
                    name, f"has to be a positive number of pixels (or unset: the model's), got {value!r}"
                )
        if self.condition_size is not None:
            size = tuple(self.condition_size) if isinstance(self.condition_size, (tuple, list)) else ()
            if len(size) != 2 or not all(_is_int(v) and v > 0 for v in size):
                raise SettingsError(
                    "condition_size", f"has to be (height, width) in pixels, got {self.condition_size!r}"
                )
            object.__setattr__(self, "condition_size", (int(size[0]), int(size[1])))
        if self.start_image is not None:
            image = self.start_image
            if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
                raise SettingsError("start_image", f"has to be an RGB picture uint8 [H, W, 3], got {_describe(image)}")
            if image.shape[-1] not in (3, 4) or 0 in image.shape:
                raise SettingsError("start_image", f"has to be an RGB picture uint8 [H, W, 3], got {_describe(image)}")
            object.__setattr__(self, "start_image", np.ascontiguousarray(image[..., :3]))  # RGBA -> RGB
        if self.mask_policy not in MASK_POLICIES:
            raise SettingsError(
                "mask_policy", f"has to be one of {', '.join(MASK_POLICIES)}, got {self.mask_policy!r}"
            )
        if self.mask_fit not in FITS:
            raise SettingsError("mask_fit", f"has to be one of {', '.join(FITS)}, got {self.mask_fit!r}")

    def replace(self, **changes: Any) -> GenerationSettings:
        """A copy with `changes` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    def plan(self, spec: ClipSpec, budget: Budget | None = None) -> GenerationPlan:
        """Clip count and size for a model with `spec`. The video's frames (RGB + mask, held while it is joined) are
        checked against `budget` (default: the process's, `mvideo_core.budget`) before anything is allocated."""
        height, width = self.height or spec.default_size[0], self.width or spec.default_size[1]
        try:
            spec.check_size(height, width)
        except ValueError as err:
            name = "height" if str(err).startswith("height") else "width"
            raise SettingsError(name, str(err).removeprefix(name).strip()) from err
        try:
            num_clips = spec.num_clips(self.seconds)
        except ValueError as err:
            raise SettingsError("seconds", str(err).removeprefix("seconds").strip()) from err
        resolve(budget).check(
            f"a {self.seconds:g} s video at {width}x{height} and {spec.fps:g} fps",
            frames=spec.total_frames(num_clips),
            height=height,
            width=width,
            itemsize=4,  # RGB frame + its mask
            hint="choose a shorter length or a smaller size",
            error=_TooLong,
        )
        return GenerationPlan(num_clips, height, width)

    def to_record(self) -> dict[str, Any]:
        """The settings as generation.json records them: JSON values; the start image is recorded by the engine's
        prepared inputs (as the SHA-1 of the image it uses)."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "start_image"}
        record["condition_size"] = list(self.condition_size) if self.condition_size else None
        return record


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array {value.dtype} {list(value.shape)}"
    return type(value).__name__
