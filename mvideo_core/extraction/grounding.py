"""Text -> boxes on one frame with Grounding DINO (transformers' `GroundingDinoForObjectDetection`).

Long class lists (e.g. the 80 COCO names used to build datasets, as in the paper) are split into queries that fit
the model's text length; each returned label is one of the phrases asked for.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mvideo_core.extraction.base import Detections, ExtractionError

if TYPE_CHECKING:  # torch loads with the model, not with this module (the classic tracker's CLI needs no torch)
    import torch

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
    """Thresholds of Grounding DINO (the authors' defaults). `box_threshold` keeps boxes whose best token scores above
    it, at any value in (0, 1), below the text threshold too; `text_threshold` only matters on the fallback path."""

    box_threshold: float = 0.35
    text_threshold: float = 0.25

    def __post_init__(self) -> None:
        for name in ("box_threshold", "text_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
                raise ExtractionError(f"{name} is a probability in [0, 1], got {value!r}")
            setattr(self, name, float(value))


class GroundingDinoDetector:
    """`Grounder` on Grounding DINO: boxes in pixels for each phrase found on a frame."""

    def __init__(
        self,
        model: str | os.PathLike = GROUNDING_DINO_CHECKPOINTS["tiny"],
        settings: GroundingSettings | None = None,
        device: str | torch.device | None = None,
    ):
        import torch
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

    def _phrase_tokens(self, input_ids: torch.Tensor, group: list[str]) -> list[list[int]] | None:
        """Token positions of each phrase of `group` in the query 'a . b .' (None if the split is not one-to-one)."""
        tokenizer = self.processor.tokenizer
        dot = tokenizer.convert_tokens_to_ids(".")
        special = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}  # not [UNK]: in a phrase
        spans, current = [], []
        for i, token in enumerate(input_ids.tolist()):
            if token == dot or token in special:
                if current:
                    spans.append(current)
                current = []
            else:
                current.append(i)
        return spans if len(spans) == len(group) else None

    def _boxes_and_labels(
        self, outputs, input_ids: torch.Tensor, group: list[str], size: tuple[int, int]
    ) -> list[tuple[np.ndarray, float, str]]:
        """(box xyxy pixels, score, phrase) of every query scoring above `box_threshold`.

        A box's score is its best token probability, as in the authors' code and transformers' post-processing; its
        phrase is the one holding that token's phrase's highest probability. transformers names a box only by the
        tokens above `text_threshold`, so a box scoring between `box_threshold` and `text_threshold` came back with
        no name and was dropped: a box threshold below the text threshold had no effect."""
        import torch

        h, w = size
        probs = outputs.logits[0].float().sigmoid().cpu()  # [Q, max_text_len]
        scores = probs.max(dim=-1).values  # [Q]
        keep = torch.nonzero(scores > self.settings.box_threshold).flatten()
        spans = self._phrase_tokens(input_ids.cpu(), group)
        if spans is None or len(keep) == 0:
            if len(keep):  # unusual tokenisation: fall back to transformers' labels (text_threshold applies)
                return self._post_processed(outputs, input_ids, group, size)
            return []
        phrase_scores = torch.stack([probs[keep][:, span].max(dim=-1).values for span in spans], dim=-1)  # [K, P]
        cx, cy, bw, bh = outputs.pred_boxes[0, keep].float().cpu().unbind(-1)  # normalised centre and size
        xyxy = torch.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], -1).numpy()
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
        best = phrase_scores.argmax(dim=-1).tolist()
        return [(xyxy[k], float(scores[q]), group[best[k]]) for k, q in enumerate(keep.tolist())]

    def _post_processed(self, outputs, input_ids, group, size) -> list[tuple[np.ndarray, float, str]]:
        h, w = size
        result = self.processor.post_process_grounded_object_detection(
            outputs,
            input_ids[None],
            threshold=self.settings.box_threshold,
            text_threshold=self.settings.text_threshold,
            target_sizes=[(h, w)],
        )[0]
        box = result["boxes"].float().cpu().numpy().reshape(-1, 4)
        box[:, [0, 2]] = box[:, [0, 2]].clip(0, w)
        box[:, [1, 3]] = box[:, [1, 3]].clip(0, h)
        names = result["text_labels"] if "text_labels" in result else result["labels"]
        scores = result["scores"].float().cpu().numpy()
        return [(b, float(s), self._match(n, group)) for b, s, n in zip(box, scores, names) if n]

    def detect(self, frame: np.ndarray, phrases: Sequence[str] | str, frame_idx: int = 0) -> Detections:
        """Boxes (xyxy pixels), scores and phrase labels on `frame` (uint8 [H, W, 3] RGB); may be empty."""
        import torch

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
            with torch.inference_mode():
                outputs = self.model(**inputs)
            for b, score, label in self._boxes_and_labels(outputs, inputs.input_ids[0], group, (h, w)):
                if b[2] - b[0] < 1 or b[3] - b[1] < 1:
                    continue  # a box that collapsed to a line after clipping
                boxes.append(b)
                scores.append(score)
                labels.append(label)
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

    import torch
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
