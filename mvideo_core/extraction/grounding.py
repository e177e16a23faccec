"""Text -> boxes on one frame with Grounding DINO (transformers' `GroundingDinoForObjectDetection`).

Long class lists (e.g. the 80 COCO names used to build datasets, as in the paper) are split into queries that fit
the model's text length; each returned label is one of the phrases asked for.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mvideo_core.extraction.base import Detections, ExtractionError

GROUNDING_DINO_CHECKPOINTS = {"tiny": "IDEA-Research/grounding-dino-tiny", "base": "IDEA-Research/grounding-dino-base"}

COCO_CLASSES: list[str] = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
]  # fmt: skip


def parse_phrases(text: str | Sequence[str]) -> list[str]:
    """`"person . dog"` or `["person", "dog"]` -> `["person", "dog"]` (lower case, stripped, no duplicates)."""
    if isinstance(text, str):
        parts = text.replace(",", ".").split(".")
    else:
        parts = list(text)
    phrases: list[str] = []
    for part in parts:
        if not isinstance(part, str):
            raise ExtractionError(f"text phrases must be strings, got {part!r}")
        p = " ".join(part.lower().split())
        if p and p not in phrases:
            phrases.append(p)
    if not phrases:
        raise ExtractionError(
            f"the text query {text!r} holds no phrase; give object names separated by dots, e.g. 'person . dog'"
        )
    return phrases


@dataclass
class GroundingSettings:
    """Thresholds of Grounding DINO (the authors' defaults)."""

    box_threshold: float = 0.35
    text_threshold: float = 0.25


class GroundingDinoDetector:
    """`Grounder` on Grounding DINO: boxes in pixels for each phrase found on a frame."""

    def __init__(
        self,
        model: str | os.PathLike = GROUNDING_DINO_CHECKPOINTS["tiny"],
        settings: GroundingSettings | None = None,
        device: str | torch.device | None = None,
    ):
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        self.settings = settings or GroundingSettings()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            self.processor = AutoProcessor.from_pretrained(str(model))
            self.model = GroundingDinoForObjectDetection.from_pretrained(str(model), use_safetensors=True)
        except OSError as err:
            raise ExtractionError(
                f"could not load Grounding DINO from {model!s}: {err}. Point --grounding-dino at a folder with a "
                f"transformers checkpoint (config.json, model.safetensors, processor files), e.g. a download of "
                f"{GROUNDING_DINO_CHECKPOINTS['tiny']}"
            ) from err
        self.model = self.model.to(self.device).eval()
        self.source = str(model)
        self.description = f"grounding-dino ({self.source})"
        self.max_text_len = int(self.model.config.max_text_len)

    def _queries(self, phrases: list[str]) -> list[list[str]]:
        """Split phrases into groups whose query 'a . b .' fits the model's text length."""
        groups: list[list[str]] = [[]]
        used = 2  # [CLS] ... [SEP]
        for phrase in phrases:
            n = len(self.processor.tokenizer.tokenize(phrase)) + 1  # + the separating '.'
            if n + 2 > self.max_text_len:
                raise ExtractionError(
                    f"the phrase {phrase!r} is {n} tokens, longer than the model's text length {self.max_text_len}"
                )
            if used + n > self.max_text_len and groups[-1]:
                groups.append([])
                used = 2
            groups[-1].append(phrase)
            used += n
        return groups

    @staticmethod
    def _match(label: str, phrases: list[str]) -> str:
        """Map the model's decoded label (possibly a partial phrase) to the phrase it came from."""
        label = " ".join(label.lower().split())
        if label in phrases:
            return label
        words = set(label.split())
        return max(phrases, key=lambda p: (len(words & set(p.split())), -abs(len(p) - len(label))))

    @torch.inference_mode()
    def detect(self, frame: np.ndarray, phrases: Sequence[str] | str, frame_idx: int = 0) -> Detections:
        """Boxes (xyxy pixels), scores and phrase labels on `frame` (uint8 [H, W, 3] RGB); may be empty."""
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise ExtractionError(
                f"a frame must be uint8 [H, W, 3] RGB, got {getattr(frame, 'dtype', type(frame))} "
                f"{getattr(frame, 'shape', '')}"
            )
        phrases = parse_phrases(phrases)
        h, w = frame.shape[:2]
        boxes, scores, labels = [], [], []
        for group in self._queries(phrases):
            text = " . ".join(group) + " ."
            inputs = self.processor(images=frame, text=text, return_tensors="pt").to(self.device)
            outputs = self.model(**inputs)
            result = self.processor.post_process_grounded_object_detection(
                outputs,
                inputs.input_ids,
                threshold=self.settings.box_threshold,
                text_threshold=self.settings.text_threshold,
                target_sizes=[(h, w)],
            )[0]
            box = result["boxes"].float().cpu().numpy().reshape(-1, 4)
            box[:, [0, 2]] = box[:, [0, 2]].clip(0, w)
            box[:, [1, 3]] = box[:, [1, 3]].clip(0, h)
            names = result["text_labels"] if "text_labels" in result else result["labels"]
            for b, s, name in zip(box, result["scores"].float().cpu().numpy(), names):
                if not name or b[2] - b[0] < 1 or b[3] - b[1] < 1:
                    continue  # a box no phrase claims, or one that collapsed to a line after clipping
                boxes.append(b)
                scores.append(s)
                labels.append(self._match(name, group))
        order = np.argsort(-np.asarray(scores, dtype=np.float32)) if scores else np.zeros(0, int)
        return Detections(
            np.asarray(boxes, np.float32).reshape(-1, 4)[order],
            np.asarray(scores, np.float32)[order],
            [labels[i] for i in order],
            frame_idx,
        )


def save_random_grounding_dino(folder: str | os.PathLike, phrases: Sequence[str] = COCO_CLASSES, seed: int = 0):
    """Write a tiny random-weight Grounding DINO with its processor (a WordPiece vocabulary of `phrases`' words)."""
    from pathlib import Path

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import (
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoProcessor,
        SwinConfig,
    )
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import GroundingDinoImageProcessorPil

    words = sorted({w for p in phrases for w in p.lower().split()})
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *words])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tokenizer = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]")  # fmt: skip
    swin = SwinConfig(
        window_size=7, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], image_size=224,
        out_features=["stage2", "stage3", "stage4"], out_indices=[2, 3, 4],
    )  # fmt: skip
    text = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
            "max_position_embeddings": 64, "vocab_size": len(vocab), "model_type": "bert"}  # fmt: skip
    config = GroundingDinoConfig(
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=20, num_feature_levels=4, encoder_n_points=1,
        decoder_n_points=1, use_timm_backbone=False, backbone_config=swin, max_text_len=32, text_config=text,
    )  # fmt: skip
    torch.manual_seed(seed)
    GroundingDinoForObjectDetection(config).eval().save_pretrained(str(folder))
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 224, "longest_edge": 320})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(str(folder))
    return Path(folder)
