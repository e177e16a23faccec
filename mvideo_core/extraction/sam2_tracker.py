"""SAM2 video tracking through transformers' `Sam2VideoModel`, behind our `Tracker` session API.

Frames stay uint8 on the CPU and are turned into model inputs one at a time when the model asks for them (a lazy
frame mapping replaces the session's preprocessed video), per-frame model outputs older than the memory window are
dropped, and masks are kept as bool at video resolution: memory does not grow with the model state of a long video.

The preprocessing mirrors `Sam2VideoVideoProcessor` (resize to the model's square input, rescale, ImageNet
normalisation) without its torchvision dependency, which cannot be installed beside torch 2.13 here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mvideo_core.extraction.base import (
    ExtractionError,
    TrackedObject,
    Tracker,
    TrackerSession,
    capped_by_prompt_area,
)

COLLAPSED = 0.35  # a tracked mask under this fraction of the nearest prompt frame's area is doubtful
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SAM2_CHECKPOINTS = {
    "tiny": "facebook/sam2.1-hiera-tiny",
    "small": "facebook/sam2.1-hiera-small",
    "base-plus": "facebook/sam2.1-hiera-base-plus",
    "large": "facebook/sam2.1-hiera-large",
}


class LazyFrames(Mapping):
    """The session's `processed_frames`, computed on demand: frame t -> float [3, S, S], normalised; a 2-frame cache."""

    def __init__(self, frames: np.ndarray, size: int, mean, std, dtype: torch.dtype):
        self.frames = frames  # uint8 [T, H, W, 3]
        self.size = size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.dtype = dtype
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self)))

    def __getitem__(self, t: int) -> torch.Tensor:
        if not 0 <= t < len(self):
            raise KeyError(t)
        if t not in self._cache:
            if len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            x = torch.from_numpy(np.ascontiguousarray(self.frames[t])).permute(2, 0, 1)[None].float()  # [1, 3, H, W]
            x = F.interpolate(x, (self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
            x = (x[0] / 255.0 - self.mean) / self.std  # [3, S, S]
            self._cache[t] = x.to(self.dtype)
        return self._cache[t]


def read_preprocessing(model_path: str | os.PathLike, image_size: int) -> dict[str, Any]:
    """Size, mean and std from a checkpoint folder's (video_)preprocessor_config.json; SAM2 defaults otherwise."""
    settings: dict[str, Any] = {"size": image_size, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
        path = Path(model_path) / name
        if path.is_file():
            cfg = json.loads(path.read_text())
            size = cfg.get("size") or {}
            settings["size"] = int(size.get("height", image_size)) if isinstance(size, dict) else int(size)
            settings["mean"] = tuple(cfg.get("image_mean", IMAGENET_MEAN))
            settings["std"] = tuple(cfg.get("image_std", IMAGENET_STD))
            break
    return settings


def load_sam2_model(model: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """Load a `Sam2VideoModel` from a local folder or hub id (safetensors only); returns (model, preprocessing)."""
    from transformers import Sam2VideoModel

    local = Path(model).is_dir()
    try:
        net = Sam2VideoModel.from_pretrained(str(model), use_safetensors=True, dtype=dtype)
    except OSError as err:
        raise ExtractionError(
            f"could not load SAM2 weights from {model!s}: {err}. Point --sam2 at a folder holding a transformers SAM2 "
            f"checkpoint (config.json + model.safetensors), e.g. a download of {SAM2_CHECKPOINTS['tiny']}"
        ) from err
    net = net.to(device).eval()
    folder = model if local else _snapshot_folder(str(model))
    prep = read_preprocessing(folder, int(net.config.image_size)) if folder else {}
    prep.setdefault("size", int(net.config.image_size))
    prep.setdefault("mean", IMAGENET_MEAN)
    prep.setdefault("std", IMAGENET_STD)
    return net, prep


def _snapshot_folder(repo_id: str) -> str | None:
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id, local_files_only=True, allow_patterns=["*.json"])
    except Exception:
        return None


class Sam2Tracker(Tracker):
    """SAM2.1 video predictor (transformers port): boxes and clicks on any frame, several objects, both directions."""

    name = "sam2"

    def __init__(
        self,
        model: str | os.PathLike | Any = SAM2_CHECKPOINTS["tiny"],
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        memory_window: int | None = None,
    ):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = dtype
        if isinstance(model, str | os.PathLike):
            self.model, self.prep = load_sam2_model(model, self.device, dtype)
            self.source = str(model)
        else:  # an already built Sam2VideoModel
            self.model = model.to(self.device).eval()
            self.prep = {"size": int(model.config.image_size), "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
            self.source = "in-memory model"
        cfg = self.model.config
        # frames whose outputs SAM2 reads back: mask memories (num_maskmem) and object pointers
        self.memory_window = memory_window or max(cfg.num_maskmem, cfg.max_object_pointers_in_encoder) + 1
        self.description = f"sam2 ({self.source}, {self.prep['size']} px)"

    @property
    def input_max_side(self) -> int:
        return int(self.prep["size"])  # frames are resized to the model's square input

    # -- session ---------------------------------------------------------------------------------------------
    def _init_session(self, session: TrackerSession) -> None:
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        h, w = session.size
        sess = Sam2VideoInferenceSession(
            video=None,
            video_height=h,
            video_width=w,
            inference_device=self.device,
            inference_state_device="cpu",
            video_storage_device="cpu",
            dtype=self.dtype,
        )
        size = self.prep["size"]
        sess.processed_frames = LazyFrames(session.frames, size, self.prep["mean"], self.prep["std"], self.dtype)
        session.engine["sam2"] = sess
        session.meta["model_size"] = size

    def _model_prompt(self, session: TrackerSession, obj: TrackedObject, frame_idx: int) -> None:
        """Give object `obj`'s prompt on `frame_idx` to the SAM2 session (coordinates scaled to the model input)."""
        sess = session.engine["sam2"]
        prompt = obj.prompts[frame_idx]
        h, w = session.size
        s = self.prep["size"]
        scale = torch.tensor([s / w, s / h], dtype=torch.float32)
        coords, labels = [], []
        if prompt.box is not None:
            coords.append(torch.from_numpy(prompt.box).view(2, 2) * scale)
            labels.append(torch.tensor([2, 3], dtype=torch.int32))
        if prompt.points is not None:
            coords.append(torch.from_numpy(prompt.points).view(-1, 2) * scale)
            labels.append(torch.from_numpy(prompt.labels).to(torch.int32))
        obj_idx = sess.obj_id_to_idx(obj.obj_id)
        if frame_idx in sess.frames_tracked_per_obj[obj_idx]:
            # a refinement on a tracked frame runs as a tracking step and is stored as a non-conditioning output,
            # but transformers writes its new memory into the frame's conditioning output when there is one: the
            # refined output would then have no memory ('maskmem_features' KeyError on every later step). Drop the
            # old prompt output first; `_segment_prompt` keeps the new one as the frame's prompt output.
            sess.output_dict_per_obj[obj_idx]["cond_frame_outputs"].pop(frame_idx, None)
        point_inputs = {
            "point_coords": torch.cat(coords)[None, None],  # [1, 1, P, 2]
            "point_labels": torch.cat(labels)[None, None],  # [1, 1, P]
        }
        sess.add_point_inputs(obj_idx, frame_idx, point_inputs)
        sess.remove_mask_inputs(obj_idx, frame_idx)
        sess.obj_with_new_inputs = [obj.obj_id]

    def _masks_from(self, session: TrackerSession, pred_masks: torch.Tensor, obj_idx: int) -> np.ndarray:
        """Low-res logits of one object -> bool [H, W] at video resolution."""
        h, w = session.size
        logits = pred_masks[obj_idx : obj_idx + 1].float()  # [1, 1, h', w']
        up = F.interpolate(logits, (h, w), mode="bilinear", align_corners=False)
        return (up[0, 0] > 0).cpu().numpy()

    def _trim_outputs(self, session: TrackerSession, frame_idx: int) -> None:
        """Drop what SAM2 will not read again: high-res masks, and non-prompt outputs outside the memory window."""
        sess = session.engine["sam2"]
        for per_obj in sess.output_dict_per_obj.values():
            for kind in ("cond_frame_outputs", "non_cond_frame_outputs"):
                out = per_obj[kind].get(frame_idx)
                if out is not None:
                    out.pop("high_res_masks", None)
            non_cond = per_obj["non_cond_frame_outputs"]
            for t in [t for t in non_cond if abs(t - frame_idx) > self.memory_window]:
                del non_cond[t]

    @staticmethod
    def _presence(out, obj_idx: int) -> float:
        """SAM2's object score (its prediction that the object is visible on the frame) as a probability."""
        logits = out.object_score_logits.reshape(-1).float()
        return float(torch.sigmoid(logits[obj_idx]))

    def _score(self, session: TrackerSession, obj: TrackedObject, frame_idx: int, mask: np.ndarray, out) -> float:
        """SAM2's object score, capped by the mask's area against the nearest prompt frame's (see `COLLAPSED`)."""
        score = self._presence(out, session.engine["sam2"].obj_id_to_idx(obj.obj_id))
        return capped_by_prompt_area(obj, frame_idx, mask, score, COLLAPSED)

    @torch.inference_mode()
    def _segment_prompt(self, session: TrackerSession, obj: TrackedObject, frame_idx: int) -> tuple[np.ndarray, float]:
        sess = session.engine["sam2"]
        self._model_prompt(session, obj, frame_idx)
        obj_idx = sess.obj_id_to_idx(obj.obj_id)
        out = self.model(inference_session=sess, frame_idx=frame_idx)
        # a refinement on a tracked frame is stored by transformers as a tracking output; keep it as a prompt
        # (conditioning) frame so propagation and later frames remember it
        per_obj = sess.output_dict_per_obj[obj_idx]
        if frame_idx in per_obj["non_cond_frame_outputs"]:
            per_obj["cond_frame_outputs"][frame_idx] = per_obj["non_cond_frame_outputs"].pop(frame_idx)
        mask = self._masks_from(session, out.pred_masks, obj_idx)
        self._trim_outputs(session, frame_idx)
        obj.state.setdefault("prompt_area", {})[frame_idx] = int(mask.sum())
        return mask, self._presence(out, obj_idx)

    @torch.inference_mode()
    def _carry(self, session: TrackerSession, src: int, dst: int, obj_ids: list[int], reverse: bool) -> None:
        sess = session.engine["sam2"]
        out = self.model(inference_session=sess, frame_idx=dst, reverse=reverse)
        for obj_id in obj_ids:
            obj = session.objects[obj_id]
            mask = self._masks_from(session, out.pred_masks, sess.obj_id_to_idx(obj_id))
            obj.set_mask(dst, mask, self._score(session, obj, dst, mask, out))
        self._trim_outputs(session, dst)

    def _forget_object(self, session: TrackerSession, obj_id: int) -> None:
        """transformers' session cannot drop one object: rebuild it from the remaining prompts (objects are tracked
        independently in SAM2, so the others' masks are unchanged; they are re-propagated on the next call)."""
        self._rebuild(session)

    def _rebuild(self, session: TrackerSession) -> None:
        """A fresh transformers session holding every object's prompts, all pending again."""
        session.engine["rebuild"] = True  # stays set if this fails part-way, so the next call tries again
        sess = session.engine["sam2"]
        sess.reset_tracking_data()
        sess.cache.clear_all()
        session.engine.pop("_half_done", None)
        for obj in session.objects.values():
            for frame_idx in sorted(obj.prompts):
                self._segment_prompt(session, obj, frame_idx)
                obj.pending.add(frame_idx)
        session.engine["rebuild"] = False

    def _prepare(self, session: TrackerSession) -> None:
        if session.engine.get("rebuild"):
            self._rebuild(session)

    def _recover(self, session: TrackerSession) -> None:
        """After a failure the transformers session may hold half-written outputs: rebuild it on the next call."""
        session.engine["rebuild"] = True


def sam2_config(name: str = "test", image_size: int | None = None):
    """Named `Sam2VideoConfig`s for random-weight models: 'hiera-tiny' is SAM2.1-tiny's architecture, 'test' a few-
    channel one for unit tests. (transformers needs hidden sizes above the 64-channel memory: equal sizes break the
    object-pointer split in 5.24.)"""
    from transformers import Sam2VideoConfig
    from transformers.models.sam2.configuration_sam2 import Sam2HieraDetConfig, Sam2VisionConfig

    if name == "hiera-tiny":
        s = image_size or 1024
        backbone = Sam2HieraDetConfig(
            image_size=s,
            blocks_per_stage=[1, 2, 7, 2],
            embed_dim_per_stage=[96, 192, 384, 768],
            num_attention_heads_per_stage=[1, 2, 4, 8],
            global_attention_blocks=[5, 7, 9],
            window_size_per_stage=[8, 4, 14, 7],
        )
        vision = Sam2VisionConfig(
            backbone_config=backbone,
            backbone_channel_list=[768, 384, 192, 96],
            backbone_feature_sizes=[[s // 4] * 2, [s // 8] * 2, [s // 16] * 2],
        )
        return Sam2VideoConfig(
            vision_config=vision,
            prompt_encoder_config={"image_size": s},
            image_size=s,
            memory_attention_rope_feat_sizes=[s // 16, s // 16],
        )
    if name != "test":
        raise ExtractionError(f"unknown SAM2 config {name!r}; use 'test' or 'hiera-tiny'")
    s = image_size or 128
    backbone = Sam2HieraDetConfig(
        hidden_size=12, image_size=s, blocks_per_stage=[1, 2, 7, 2], embed_dim_per_stage=[12, 24, 48, 96]
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[96, 48, 24, 12],
        backbone_feature_sizes=[[s // 4] * 2, [s // 8] * 2, [s // 16] * 2],
        fpn_hidden_size=128,
    )
    return Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config={"hidden_size": 128, "image_size": s, "patch_size": 16},
        mask_decoder_config={"hidden_size": 128, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32},
        memory_attention_hidden_size=128,
        memory_encoder_hidden_size=128,
        image_size=s,
        mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128,
        memory_fuser_intermediate_dim=64,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=32,
        memory_attention_rope_feat_sizes=[s // 16, s // 16],
    )


def save_random_sam2(
    folder: str | os.PathLike, name: str = "test", image_size: int | None = None, seed: int = 0
) -> Path:
    """Write a random-weight SAM2 checkpoint (config.json + model.safetensors) for tests, benches and demos."""
    from transformers import Sam2VideoModel

    torch.manual_seed(seed)
    model = Sam2VideoModel(sam2_config(name, image_size)).eval()
    model.save_pretrained(str(folder))
    return Path(folder)
