"""Wan2.1-VACE as a generation engine: edited masks -> VACE's layout control video -> `WanVACEPipeline`.

Layout control, in the authors' convention (VACE repository, `vace/annotators/layout.py`,
`LayoutMaskAnnotator` / `LayoutTrackAnnotator`): every frame starts as a white canvas and each object's mask is drawn
as its external contours (`cv2.findContours(RETR_EXTERNAL, CHAIN_APPROX_SIMPLE)` + `cv2.drawContours`): outlines,
not filled silhouettes, one control frame per mask frame.
- Background: white (255, 255, 255), the annotators' `BG_COLOR`.
- Colours: one per object, in the order of the mask set. The first is black, the annotators' default `BOX_COLOR`;
  the authors colour further labels from a RAM-tag colour list shipped with their annotator weights (not in the
  repository), so we use `LAYOUT_COLORS`: saturated colours that stand out on white.
- Thickness: the annotators draw 3 px. We draw at the generation size and keep 3 px at Wan's 480p (short side 480),
  scaled with the short side: max(1, round(3 * min(H, W) / 480)), so 720p gets 4 px and a 64x96 test video 1 px.
The generation mask is 1 (generate) on every layout frame: the outlines steer, they are not pixels to keep.

Long video: clip k > 0 starts with the last frames of clip k - 1 as known frames (control = those frames, mask 0),
then the layout for the rest, as the authors' clip extension (`FrameRefExpandAnnotator`, mode "firstclip") does; frames
without any control (text only) are grey 127.5 with mask 1, the annotators' `REF_COLOR`. The start image becomes a
VACE reference image (appearance), fitted onto a white canvas by the pipeline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from mvideo_core.weights import WeightsError

# The public checkpoints, diffusers layout (safetensors): what each is, for messages, the studio and docs.
VACE_MODELS: dict[str, str] = {
    "Wan-AI/Wan2.1-VACE-1.3B-diffusers": "Wan2.1-VACE 1.3B (480p, ~8 GB of GPU memory)",
    "Wan-AI/Wan2.1-VACE-14B-diffusers": "Wan2.1-VACE 14B (480p and 720p, a large GPU or offload)",
}
DEFAULT_VACE_MODEL = "Wan-AI/Wan2.1-VACE-1.3B-diffusers"
VACE_PIPELINE_CLASS = "WanVACEPipeline"

# Drawing convention (see the module docstring for the source of each choice).
LAYOUT_BACKGROUND: tuple[int, int, int] = (255, 255, 255)
LAYOUT_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (230, 25, 75),
    (0, 130, 200),
    (60, 180, 75),
    (145, 30, 180),
    (245, 130, 48),
    (0, 128, 128),
    (170, 110, 40),
)
LAYOUT_THICKNESS = 3  # px at LAYOUT_REFERENCE_SIDE
LAYOUT_REFERENCE_SIDE = 480  # short side of Wan's 480p (480x832)
UNCONTROLLED_GREY = 0.5  # 127.5 / 255: "no control here" (the annotators' REF_COLOR)


def layout_thickness(height: int, width: int) -> int:
    """Outline thickness in px at a (height, width) frame: 3 px at a 480 px short side, scaled, at least 1."""
    return max(1, round(LAYOUT_THICKNESS * min(height, width) / LAYOUT_REFERENCE_SIDE))


def layout_color(index: int) -> tuple[int, int, int]:
    """RGB outline colour of the object at `index` in a mask set (0 = black; cycles after `LAYOUT_COLORS`)."""
    return LAYOUT_COLORS[index % len(LAYOUT_COLORS)]


def draw_layout(masks: np.ndarray, thickness: int | None = None) -> np.ndarray:
    """Object masks bool [K, T, H, W] (or one object [T, H, W]) -> the layout control video uint8 [T, H, W, 3].

    White canvas, each object's external contours in `layout_color(k)`, objects drawn in order (later on top).
    """
    masks = np.asarray(masks)
    if masks.ndim == 3:
        masks = masks[None]
    if masks.ndim != 4 or masks.dtype != bool:
        raise ValueError(f"draw_layout needs bool masks [K, T, H, W] or [T, H, W], got {masks.dtype} {masks.shape}")
    _, t, h, w = masks.shape
    thickness = layout_thickness(h, w) if thickness is None else thickness
    video = np.empty((t, h, w, 3), dtype=np.uint8)
    video[:] = LAYOUT_BACKGROUND
    for k, obj in enumerate(masks):
        for i in range(t):
            contours, _ = cv2.findContours(obj[i].view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            if contours:
                cv2.drawContours(video[i], contours, -1, layout_color(k), thickness=thickness)
    return video


@dataclass
class VaceClipInputs:
    """What one VACE clip is conditioned on.

    video: float32 [T, H, W, 3] in [0, 1] (known frames, layout outlines, or grey where there is no control);
    mask: bool [T, H, W], True where the model generates, False on known frames.
    """

    video: np.ndarray
    mask: np.ndarray

    @property
    def num_known(self) -> int:
        """Leading known frames (mask 0)."""
        generated = self.mask.reshape(self.mask.shape[0], -1).any(axis=1)
        return int(np.argmax(generated)) if generated.any() else len(generated)

    def pipeline_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """(video, mask) as `WanVACEPipeline` takes them: float32 [1, T, H, W, 3] and [1, T, H, W, 1], both in [0, 1]."""
        return self.video[None], self.mask[None, ..., None].astype(np.float32)


def clip_inputs(
    num_frames: int,
    size: tuple[int, int],
    layout: np.ndarray | None = None,
    known: np.ndarray | None = None,
) -> VaceClipInputs:
    """The control video and mask of one clip: `known` frames uint8 [N, H, W, 3] first (mask 0), then the layout
    uint8 [T, H, W, 3] of the remaining frames (mask 1; `layout` covers the whole clip, its first N frames are
    replaced), or grey with mask 1 where there is no layout (text only)."""
    h, w = size
    video = np.full((num_frames, h, w, 3), UNCONTROLLED_GREY, dtype=np.float32)
    mask = np.ones((num_frames, h, w), dtype=bool)
    if layout is not None:
        if layout.shape != (num_frames, h, w, 3) or layout.dtype != np.uint8:
            raise ValueError(f"layout must be uint8 {(num_frames, h, w, 3)}, got {layout.dtype} {layout.shape}")
        video[:] = layout / np.float32(255)
    if known is not None and len(known):
        n = len(known)
        if n >= num_frames or known.shape[1:] != (h, w, 3) or known.dtype != np.uint8:
            raise ValueError(
                f"known frames must be uint8 [N < {num_frames}, {h}, {w}, 3], got {known.dtype} {known.shape}"
            )
        video[:n] = known / np.float32(255)
        mask[:n] = False
    return VaceClipInputs(video, mask)


def reference_image(image: np.ndarray) -> Image.Image:
    """A start image uint8 [H, W, 3] -> the VACE reference image (the pipeline fits it onto a white canvas)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(f"the start image must be RGB uint8 [H, W, 3], got {image.dtype} {image.shape}")
    return Image.fromarray(image)


# -- weights --------------------------------------------------------------------------------------------------------


def _missing(what: str, flag: str) -> WeightsError:
    return WeightsError(
        f"{what}; pass {flag} {DEFAULT_VACE_MODEL} (a hub id, downloaded on first use) or a local folder holding "
        f"that checkpoint in the diffusers layout (model_index.json naming {VACE_PIPELINE_CLASS}, safetensors)"
    )


def resolve_vace_model(model: str | Path | None, flag: str = "--base-model") -> str:
    """A local Wan VACE folder (diffusers layout) or a hub id; anything else is a WeightsError naming the flag."""
    if model is None or str(model).strip() == "":
        raise _missing("no Wan2.1-VACE model given", flag)
    path = Path(model).expanduser()
    if path.is_dir():
        index = path / "model_index.json"
        try:
            name = json.loads(index.read_text()).get("_class_name") if index.is_file() else None
        except (OSError, ValueError):
            name = None
        if name != VACE_PIPELINE_CLASS:
            raise _missing(
                f"{path} is not a Wan2.1-VACE folder ({index.name} naming {VACE_PIPELINE_CLASS} expected)", flag
            )
        return str(path)
    parts = str(model).split("/")
    if path.exists() or len(parts) != 2 or not all(parts) or str(model).startswith((".", "/", "~")):
        raise _missing(f"Wan2.1-VACE model {str(model)!r} is neither a local folder nor a hub id (org/name)", flag)
    return str(model)


def vace_weights_found(model: str | Path | None) -> bool:
    """Whether `model` is a local Wan VACE folder or a hub id already in the local hub cache (no network)."""
    try:
        source = resolve_vace_model(model)
    except WeightsError:
        return False
    if Path(source).is_dir():
        return True
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(source, "model_index.json"), str)


def load_vace_pipeline(
    model: str | Path | None = DEFAULT_VACE_MODEL,
    *,
    torch_dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    flag: str = "--base-model",
):
    """A Wan2.1-VACE checkpoint (hub id or local folder, safetensors only) -> a ready `WanVACEPipeline`.

    The VAE stays in float32 (as the checkpoint's model card loads it); the rest takes `torch_dtype`.
    """
    from diffusers import AutoencoderKLWan, WanVACEPipeline

    source = resolve_vace_model(model, flag)
    try:
        vae = AutoencoderKLWan.from_pretrained(source, subfolder="vae", dtype=torch.float32, use_safetensors=True)
        pipe = WanVACEPipeline.from_pretrained(source, vae=vae, dtype=torch_dtype, use_safetensors=True)
    except (OSError, ValueError, TypeError) as err:
        raise _missing(f"could not load Wan2.1-VACE from {source!r} ({err})", flag) from err
    if device is not None:
        pipe.to(device)
    return pipe
