"""Compositing: several layers (one subject each, from any source) onto one target canvas and timeline.

Occlusion decision: by default (`occlusion="full"`) every object keeps its full silhouette, and objects are stored
in z-order (bottom first) so `MaskSet.label_map()` and overlays show the top layer in front. The model's condition,
the union, is the same either way. `occlusion="visible"` instead removes from each object the pixels covered by
layers above it (per-object visible masks, e.g. for export to tools that expect non-overlapping labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from editing.timeline import resample_indices
from editing.transforms import EditError
from mvideo_core.masks import MaskSet
from mvideo_core.video_io import resize_masks

FITS = ("crop", "letterbox", "stretch")
OCCLUSIONS = ("full", "visible")


@dataclass
class Layer:
    """One subject on the target canvas: `masks` bool [T, H, W] at the target size and frame count."""

    masks: np.ndarray
    obj_id: int
    name: str = "object"
    z: float = 0.0


def fit_size(masks: np.ndarray, size: tuple[int, int], fit: str = "crop") -> np.ndarray:
    """Resize bool [T, h, w] to `size` (H, W), nearest neighbour, with the same geometry as the video frames
    (`mvideo_core.video_io.resize_masks`): crop (cover), letterbox (fit, pad) or stretch."""
    if fit not in FITS:
        raise EditError(f"fit must be one of {list(FITS)}, got {fit!r}")
    if masks.shape[1:] == tuple(size):
        return masks
    return resize_masks(masks, tuple(size), fit)


def placement_indices(num_layer: int, num_frames: int, offset_frames: int, extend: str = "none") -> np.ndarray:
    """For each target frame, the layer frame shown there (-1 = absent). The layer starts at `offset_frames`;
    outside its span it is absent ("none"), holds its end frames ("hold") or repeats ("loop")."""
    j = np.arange(num_frames) - int(offset_frames)
    if extend == "hold":
        return np.clip(j, 0, num_layer - 1)
    if extend == "loop":
        return j % num_layer
    if extend != "none":
        raise EditError(f"extend must be one of ['none', 'hold', 'loop'], got {extend!r}")
    return np.where((j >= 0) & (j < num_layer), j, -1)


def conform(
    masks: np.ndarray,
    fps: float,
    *,
    size: tuple[int, int],
    target_fps: float,
    num_frames: int,
    offset: float = 0.0,
    speed: float = 1.0,
    fit: str = "crop",
    extend: str = "none",
) -> np.ndarray:
    """Bring one source sequence bool [T, h, w] at `fps` onto the target: [num_frames, H, W] at `target_fps`,
    starting `offset` seconds into the target and playing at `speed` x."""
    idx = resample_indices(len(masks), fps, target_fps, speed)
    place = placement_indices(len(idx), num_frames, int(round(offset * target_fps)), extend)
    out = np.zeros((num_frames, *size), dtype=bool)
    shown = place >= 0
    if shown.any():
        out[shown] = fit_size(masks[idx[place[shown]]], size, fit)
    return out


def hide_covered(stack: np.ndarray, occlusion: str) -> np.ndarray:
    """With occlusion "visible", remove from each object of bool [K, T, H, W] (bottom to top) the pixels covered by
    the objects above it, in place; "full" leaves the stack as it is."""
    if occlusion not in OCCLUSIONS:
        raise EditError(f"occlusion must be one of {list(OCCLUSIONS)}, got {occlusion!r}")
    if occlusion == "visible" and len(stack) > 1:
        above = np.zeros(stack.shape[1:], dtype=bool)
        for k in range(len(stack) - 1, -1, -1):
            covered = above.copy()
            above |= stack[k]
            stack[k] &= ~covered
    return stack


def composite(layers: Sequence[Layer], occlusion: str = "full", fps: float = 8.0) -> MaskSet:
    """Stack layers into a MaskSet ordered bottom (lowest z) to top; see the module docstring for occlusion."""
    if occlusion not in OCCLUSIONS:
        raise EditError(f"occlusion must be one of {list(OCCLUSIONS)}, got {occlusion!r}")
    if not layers:
        raise EditError("composite needs at least one layer")
    shapes = {layer.masks.shape for layer in layers}
    if len(shapes) != 1:
        raise EditError(f"all layers must be on the same target [T, H, W], got {sorted(shapes)}; conform them first")
    order = sorted(range(len(layers)), key=lambda i: layers[i].z)  # stable: equal z keeps the given order
    stack = np.stack([layers[i].masks for i in order])  # [K, T, H, W]
    hide_covered(stack, occlusion)
    return MaskSet(
        stack,
        fps,
        ids=[layers[i].obj_id for i in order],
        names=[layers[i].name for i in order],
        meta={"occlusion": occlusion},
    )
