"""SAM2 tracking through Meta's `sam2` package, for people who hold the authors' `.pt` checkpoints.

The package is optional (it is not in requirements.txt): it wants hydra-core, iopath and, for parts we do not use,
torchvision. Its predictor expects a folder of JPEG frames; we hand it our frames through a lazy mapping instead, so
frames stay uint8 on the CPU as in `Sam2Tracker`. Checkpoints load with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvideo_core.extraction.base import ExtractionError, TrackedObject, Tracker, TrackerSession, capped_by_prompt_area
from mvideo_core.extraction.sam2_tracker import COLLAPSED, IMAGENET_MEAN, IMAGENET_STD, LazyFrames

INSTALL_HINT = (
    "install sam2 and torchvision to use Meta .pt checkpoints (pip install sam2==1.1.0 hydra-core iopath "
    "torchvision), or use the transformers backend with a safetensors checkpoint such as facebook/sam2.1-hiera-tiny"
)
# `.pt` file name -> the package's hydra config
PKG_CONFIGS = {
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


def import_sam2_package():
    """Import the `sam2` package's video predictor builder, or raise the install hint."""
    try:
        from sam2.build_sam import build_sam2_video_predictor
    except Exception as err:  # ImportError, or hydra/iopath missing inside the package
        raise ExtractionError(f"the sam2 package backend is unavailable ({err}); {INSTALL_HINT}") from err
    return build_sam2_video_predictor


def config_for_checkpoint(path: str | os.PathLike) -> str:
    """The hydra config of a Meta checkpoint, from its file name (e.g. sam2.1_hiera_tiny.pt)."""
    stem = Path(path).stem
    if stem not in PKG_CONFIGS:
        raise ExtractionError(
            f"cannot tell the model size of {Path(path).name}; name it like one of {sorted(PKG_CONFIGS)}.pt "
            "or pass pkg_config='configs/sam2.1/sam2.1_hiera_t.yaml'"
        )
    return PKG_CONFIGS[stem]


class Sam2PackageTracker(Tracker):
    """SAM2 via the `sam2` package (`SAM2VideoPredictor`), same session API as `Sam2Tracker`."""

    name = "sam2-package"

    def __init__(
        self,
        checkpoint: str | os.PathLike | None,
        pkg_config: str | None = None,
        device: str | torch.device | None = None,
        overrides: list[str] | None = None,
        memory_window: int = 17,
    ):
        build = import_sam2_package()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise ExtractionError(f"--sam2 {checkpoint}: no such .pt checkpoint file")
        config = pkg_config or config_for_checkpoint(checkpoint)
        self.predictor = build(
            config,
            str(checkpoint) if checkpoint else None,
            device=str(self.device),
            hydra_overrides_extra=overrides or [],
        )
        self.memory_window = memory_window
        self.description = f"sam2-package ({checkpoint or 'random weights'}, {self.predictor.image_size} px)"

    def _init_session(self, session: TrackerSession) -> None:
        import sam2.sam2_video_predictor as svp

        h, w = session.size
        size = int(self.predictor.image_size)
        lazy = LazyFrames(session.frames, size, IMAGENET_MEAN, IMAGENET_STD, torch.float32)
        original = svp.load_video_frames
        svp.load_video_frames = lambda **kwargs: (_Indexable(lazy), h, w)
        try:
            state = self.predictor.init_state(video_path="<in memory>", offload_video_to_cpu=True)
        finally:
            svp.load_video_frames = original
        session.engine["state"] = state
        session.meta["model_size"] = size

    def _video_mask(self, masks: torch.Tensor, obj_ids: list[int], obj_id: int) -> np.ndarray:
        return (masks[list(obj_ids).index(obj_id), 0].float() > 0).cpu().numpy()

    def _autocast(self):
        # the package keeps mask memories in bfloat16 and expects autocast around inference (as in its README)
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _presence(self, session: TrackerSession, obj_id: int, frame_idx: int) -> float:
        """The package's object score for `obj_id` on a frame as a probability (1.0 where it kept none)."""
        state = session.engine["state"]
        idx = state["obj_id_to_idx"].get(obj_id)
        per_obj = state["output_dict_per_obj"].get(idx, {})
        for kind in ("cond_frame_outputs", "non_cond_frame_outputs"):
            out = per_obj.get(kind, {}).get(frame_idx)
            if out is not None and out.get("object_score_logits") is not None:
                return float(torch.sigmoid(out["object_score_logits"].float().reshape(-1)[0]))
        return 1.0

    def _score(self, session: TrackerSession, obj: TrackedObject, frame_idx: int, mask: np.ndarray) -> float:
        """Object score, capped by the area against the nearest prompt frame's (as `Sam2Tracker._score`)."""
        score = self._presence(session, obj.obj_id, frame_idx)
        return capped_by_prompt_area(obj, frame_idx, mask, score, COLLAPSED)

    @torch.inference_mode()
    def _segment_prompt(self, session: TrackerSession, obj: TrackedObject, frame_idx: int) -> tuple[np.ndarray, float]:
        with self._autocast():
            mask = self._segment_prompt_amp(session, obj, frame_idx)
        obj.state.setdefault("prompt_area", {})[frame_idx] = int(mask.sum())
        return mask, self._presence(session, obj.obj_id, frame_idx)

    def _segment_prompt_amp(self, session: TrackerSession, obj: TrackedObject, frame_idx: int) -> np.ndarray:
        prompt = obj.prompts[frame_idx]
        _, obj_ids, masks = self.predictor.add_new_points_or_box(
            session.engine["state"],
            frame_idx=frame_idx,
            obj_id=obj.obj_id,
            points=prompt.points,
            labels=prompt.labels,
            box=prompt.box,
            clear_old_points=True,
        )
        return self._video_mask(masks, obj_ids, obj.obj_id)

    @torch.inference_mode()
    def _carry(self, session: TrackerSession, src: int, dst: int, obj_ids: list[int], reverse: bool) -> None:
        with self._autocast():
            self._carry_amp(session, dst, obj_ids, reverse)

    def _carry_amp(self, session: TrackerSession, dst: int, obj_ids: list[int], reverse: bool) -> None:
        state = session.engine["state"]
        # the package skips frame 0 when asked to start a reverse pass there: run it as a one-frame forward step
        reverse = reverse and dst > 0
        for frame_idx, ids, masks in self.predictor.propagate_in_video(
            state, start_frame_idx=dst, max_frame_num_to_track=0, reverse=reverse
        ):
            for obj_id in obj_ids:
                obj = session.objects[obj_id]
                mask = self._video_mask(masks, ids, obj_id)
                obj.set_mask(frame_idx, mask, self._score(session, obj, frame_idx, mask))
        for per_obj in state["output_dict_per_obj"].values():
            non_cond = per_obj["non_cond_frame_outputs"]
            for t in [t for t in non_cond if abs(t - dst) > self.memory_window]:
                del non_cond[t]

    def _forget_object(self, session: TrackerSession, obj_id: int) -> None:
        self.predictor.remove_object(session.engine["state"], obj_id, strict=False, need_output=False)


class _Indexable:
    """`images[t]` for the package's predictor, backed by our lazy frames."""

    def __init__(self, lazy: LazyFrames):
        self.lazy = lazy

    def __len__(self) -> int:
        return len(self.lazy)

    def __getitem__(self, t: int) -> Any:
        return self.lazy[int(t)]
